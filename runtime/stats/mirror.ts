/** Rows and columns per tile: two 32 x 32 float64 tiles, 16 kB, stay in L1 while one is copied into the other. */
const TILE = 32;

/**
 * Makes the square dim x dim row-major `matrix` symmetric in place from one triangle: the upper one's entries
 * copied into the lower (`from` 'upper') or the other way round. Tile by tile: copied value by value, the
 * mirrored side strides over the matrix by whole rows and costs five times as long at 1280.
 */
export function mirrorTriangle(matrix: Float64Array, dim: number, from: 'upper' | 'lower'): void {
  for (let i0 = 0; i0 < dim; i0 += TILE) {
    const i1 = Math.min(i0 + TILE, dim);
    for (let j0 = i0; j0 < dim; j0 += TILE) {
      const j1 = Math.min(j0 + TILE, dim);
      for (let i = i0; i < i1; i++) {
        for (let j = Math.max(j0, i + 1); j < j1; j++) {
          if (from === 'upper') matrix[j * dim + i] = matrix[i * dim + j];
          else matrix[i * dim + j] = matrix[j * dim + i];
        }
      }
    }
  }
}
