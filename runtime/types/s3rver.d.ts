// s3rver ships no type declarations; runtime/storage/embedded-s3.ts types the small part it uses.
declare module 's3rver';
declare module 's3rver/lib/utils.js';
declare module 's3rver/lib/models/object.js';
