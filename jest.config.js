// Jest runs the TypeScript sources through SWC (TypeScript 5's type check runs separately in `npm test`).
// p-map, hyparquet(-writer) and @jsquash/jpeg are published as ES modules only, so SWC transforms them too.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: '<rootDir>/test/helpers/node-environment.js',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.(t|j|mj)s$': ['<rootDir>/test/helpers/swc-transform.js', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!(p-map|hyparquet|hyparquet-writer|@jsquash/jpeg)/)'],
  testTimeout: 120000,
  setupFiles: ['<rootDir>/test/helpers/setup-env.js'],
  // Tests share two cores with the tfjs wasm runtime; more workers only add contention.
  maxWorkers: 2,
};
