// A hand-written Node.js peer doing the same job as firehose-replay on a gzip NDJSON object:
// gunzip -> lines -> JSON.parse -> sha256 row id -> stringify -> file. For comparison only.
const fs = require('fs');
const zlib = require('zlib');
const readline = require('readline');
const crypto = require('crypto');

const [input, output] = process.argv.slice(2);
const etag = crypto.createHash('md5').update(fs.readFileSync(input)).digest('hex');
const out = fs.createWriteStream(output);
const rl = readline.createInterface({ input: fs.createReadStream(input).pipe(zlib.createGunzip()) });
let ordinal = 0;
let buf = [];
rl.on('line', (line) => {
  if (!line.trim()) return;
  const rec = JSON.parse(line);
  rec._row_id = crypto.createHash('sha256').update(`bench/${input}/${etag}/${ordinal++}`).digest('hex').slice(0, 32);
  buf.push(JSON.stringify(rec));
  if (buf.length >= 1000) { out.write(buf.join('\n') + '\n'); buf = []; }
});
rl.on('close', () => { if (buf.length) out.write(buf.join('\n') + '\n'); out.end(); });
