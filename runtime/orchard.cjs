#!/usr/bin/env node
// Entry point for `npx orchard` and the npm scripts: runs the TypeScript sources through tsx, so a clone needs
// no build step. The EC2 instance runs an esbuild bundle of the same `cli.ts` instead.
'use strict';
require('tsx/cjs');
require('./cli.ts').main(process.argv);
