// jsfive ships no type declarations; runtime/model/keras-h5.ts types the small part it uses (reading only).
declare module 'jsfive' {
  export class Dataset {
    readonly shape: number[];
    readonly dtype: unknown;
    readonly value: ArrayLike<number>;
  }
  export class Group {
    readonly keys: string[];
    readonly attrs: Record<string, unknown>;
    get(path: string): Group | Dataset | null;
  }
  export class File extends Group {
    constructor(buffer: ArrayBuffer, filename: string);
  }
}
