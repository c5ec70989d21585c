// Entry point of the esbuild bundle that runs on the EC2 instance (`lib/runtime-bundle.ts`).
import { main } from './cli';

void main(process.argv);
