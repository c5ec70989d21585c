import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from '/work/main/node_modules/sharp';
import { enlargeBilinear } from '/work/main/runtime/images/upscale';
async function main() {
  const dir = '/tmp/pv/images';
  const keys = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((k) => k.endsWith('.jpg'));
  const datas = keys.slice(0, 500).map((k) => fs.readFileSync(path.join(dir, k)));
  sharp.cache(false);
  const time = async (name: string, f: (d: Buffer) => Promise<unknown> | unknown) => {
    const c0 = process.cpuUsage(); const t0 = performance.now();
    for (const d of datas) await f(d);
    const c = process.cpuUsage(c0);
    console.log(name, 'wall', ((performance.now() - t0) / datas.length).toFixed(3), 'cpu', ((c.user + c.system) / 1000 / datas.length).toFixed(3));
  };
  await time('metadata', (d) => sharp(d, { limitInputPixels: false }).metadata());
  await time('decode raw', (d) => sharp(d, { failOn: 'warning', autoOrient: true, pages: 1 }).flatten({ background: { r: 255, g: 255, b: 255 } }).toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }));
  await time('decode raw plain', (d) => sharp(d).raw().toBuffer());
  const src = Buffer.alloc(100 * 100 * 3, 7); const out = Buffer.alloc(224 * 224 * 3);
  await time('enlarge', () => enlargeBilinear(src, 100, 100, 224, out));
  await time('sharp resize', (d) => sharp(d).resize(224, 224, { fit: 'fill', kernel: 'linear' }).raw().toBuffer());
}
main();
