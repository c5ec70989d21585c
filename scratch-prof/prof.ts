import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateSampleImages } from '/work/main/runtime/images/generate';
import { preprocessImage } from '/work/main/runtime/images/preprocess';
import sharp from '/work/main/node_modules/sharp';
async function main() {
  const dir = '/tmp/pv/images';
  let keys: string[];
  if (!fs.existsSync(dir)) keys = await generateSampleImages(dir, { perClass: 250, seed: 0 });
  else keys = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((k) => k.endsWith('.jpg') || k.endsWith('.png') || k.endsWith('.jpeg'));
  const files = keys.map((k) => path.join(dir, k));
  const meta = await sharp(fs.readFileSync(files[0]!)).metadata();
  console.log(files.length, 'images', meta.width, meta.height, meta.format, fs.statSync(files[0]!).size, 'bytes; sharp concurrency', sharp.concurrency(), 'UV', process.env.UV_THREADPOOL_SIZE);
  const datas = files.slice(0, 500).map((f) => fs.readFileSync(f));
  const cpu0 = process.cpuUsage(); let t0 = performance.now();
  for (const d of datas) await preprocessImage(d, { size: 224, maxPixels: 1e8 });
  let cpu = process.cpuUsage(cpu0);
  console.log('sequential preprocess ms/img wall', ((performance.now() - t0) / datas.length).toFixed(2), 'cpu', ((cpu.user + cpu.system) / 1000 / datas.length).toFixed(2));
}
main();
