#!/usr/bin/env node
// Entry point for `npx orchard` and the npm scripts: runs the TypeScript sources through tsx, so a clone needs
// no build step. The EC2 instance runs an esbuild bundle of the same `cli.ts` instead.
'use strict';
// The AWS SDK warns on every start under Node < 22 that *future* SDK releases will need Node 22. The SDK
// version here is pinned, so the warning says nothing actionable about this run; EC2 runs Node 22 anyway.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
require('tsx/cjs');
require('./cli.ts').main(process.argv);
