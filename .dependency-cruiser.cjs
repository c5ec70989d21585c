// The module graph's rules, checked by test/architecture.test.ts (npx depcruise runtime lib bin bench).
// Layers of runtime/, lowest first: leaves (errors, random, progress, contracts/deployment, images/limits) →
// storage, onnx → images, stats, pca, quality → model → contracts/results, output → report → pipeline → the commands
// (cli, demo, doctor, upload). A module may import its own layer and the ones below, never one above.
const below = (from, to, comment) => ({ name: `no-upward-${from}`.replace(/[^a-z-]+/g, '-'), severity: 'error', comment, from: { path: from }, to: { path: to } });

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'No import cycles anywhere.', from: {}, to: { circular: true } },
    { name: 'runtime-stands-alone', severity: 'error', comment: 'The runtime is bundled for the instance on its own: it never imports the CDK app or its scripts.', from: { path: '^runtime/' }, to: { path: '^(lib|bin|bench|test)/' } },
    { name: 'lib-not-bin', severity: 'error', comment: 'Constructs and stacks do not import the app or its scripts.', from: { path: '^lib/' }, to: { path: '^(bin|bench|test)/' } },
    {
      name: 'leaves-import-nothing',
      severity: 'error',
      comment: 'Facts shared across layers (and across the deploy boundary) live in modules that import nothing of ours.',
      from: { path: '^runtime/(errors|random|contracts/deployment|images/limits)\\.ts$' },
      to: { path: '^(runtime|lib|bin)/' },
    },
    below('^runtime/contracts/', '^runtime/(pipeline|report|output|storage|onnx|cli|demo|doctor|upload|main)', 'The results contract imports types from the layers below the pipeline only.'),
    below('^runtime/(storage|onnx)/', '^runtime/(images|stats|pca|model|contracts/results|output|report|pipeline)/|^runtime/(cli|demo|doctor|upload)\\.ts$', 'Storage and ONNX plumbing know nothing of what uses them.'),
    below('^runtime/(images|stats|pca|quality)/', '^runtime/(model|contracts/results|output|report|pipeline)/|^runtime/(cli|demo|doctor|upload)\\.ts$', 'Images, statistics and PCA are below the model and the pipeline.'),
    below('^runtime/model/', '^runtime/(contracts/results|output|report|pipeline)/|^runtime/(cli|demo|doctor|upload)\\.ts$', 'The model layer does not depend on the pipeline (ModelChoice lives in model/).'),
    below('^runtime/(output|report)/', '^runtime/pipeline/|^runtime/(cli|demo|doctor|upload)\\.ts$', 'The report reads the results contract, never the pipeline.'),
    below('^runtime/pipeline/', '^runtime/(cli|demo|doctor|upload)\\.ts$', 'The pipeline is called by the commands, not the other way round.'),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(node_modules|dist|cdk\\.out)/' },
  },
};
