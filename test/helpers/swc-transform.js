// @swc/jest, plus one fix for @jsquash/jpeg's WebAssembly glue: an ES module that reads and assigns
// `import.meta.url`. SWC turns the module into CommonJS but leaves the assignment, and Jest then refuses the file
// as an ES module. The glue only needs the URL to locate its .wasm, which orchard hands it itself
// (runtime/images/fast-jpeg.ts), so `import.meta` becomes a plain object carrying the file's URL.
'use strict';
const { createTransformer: createSwc } = require('@swc/jest');

const IMPORT_META = /\bimport\.meta\b/g;
const REPLACEMENT = '({ url: require("url").pathToFileURL(__filename).href })';

function rewrite(source, file) {
  return file.includes('@jsquash') ? source.replace(IMPORT_META, REPLACEMENT) : source;
}

module.exports = {
  createTransformer(options) {
    const swc = createSwc(options);
    return {
      ...swc,
      process: (source, file, config) => swc.process(rewrite(source, file), file, config),
      processAsync: (source, file, config) => swc.processAsync(rewrite(source, file), file, config),
      getCacheKey: (source, file, config) => `${swc.getCacheKey(source, file, config)}:import-meta-1`,
    };
  },
};
