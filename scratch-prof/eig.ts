import { symmetricEigen } from '/work/main/runtime/pca/symmetric-eigen';
const n = 1280, m = 3000;
const x = new Float64Array(m * n);
let s = 1; const rnd = () => ((s = (s * 16807) % 2147483647) / 2147483647 - 0.5);
for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) x[i * n + j] = rnd() * (1 + 20 / (1 + j));
const cov = new Float64Array(n * n);
for (let r = 0; r < m; r++) { const o = r * n; for (let i = 0; i < n; i++) { const xi = x[o + i]; if (xi === 0) continue; for (let j = 0; j <= i; j++) cov[i * n + j] += xi * x[o + j]; } }
for (let rep = 0; rep < 3; rep++) { const t0 = performance.now(); symmetricEigen(cov, n, () => 24); console.log('eigen k=24', ((performance.now() - t0) / 1000).toFixed(3), 's'); }
