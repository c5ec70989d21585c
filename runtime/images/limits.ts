/**
 * The decompression-bomb guard's default: the most pixels (width × height) an image may declare before it is
 * decoded. 40 megapixels is a large photo; Fruits-360 images have 10,000.
 */
export const DEFAULT_MAX_PIXELS = 40_000_000;
