// Runs original TF.js graph models with @tensorflow/tfjs (pure-JS CPU backend by default; never tfjs-node)
// and writes their raw outputs, as references for posekit's torch importer.
//
// usage: node run_reference.mjs JOBS.json [--backend cpu|wasm]
// JOBS.json: [{"model": "path/model.json", "inputs": {"name": {"file": "x.raw", "shape": [...], "dtype": "int32"|"float32"}},
//              "outputs": ["Identity:0", ...], "out": "result.json"}]
// Each result.json: {"backend": ..., "outputs": {"name": {"shape": [...], "data": [...]}}}
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import { fileHandler, useBackend } from './tfjs_common.mjs';

function readInput(spec) {
  const buf = fs.readFileSync(spec.file);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const data = spec.dtype === 'int32' ? new Int32Array(ab) : new Float32Array(ab);
  return tf.tensor(data, spec.shape, spec.dtype);
}

async function main() {
  const args = process.argv.slice(2);
  const backend = await useBackend(args, 'cpu');
  const jobs = JSON.parse(fs.readFileSync(args[0], 'utf8'));
  const models = new Map();
  for (const job of jobs) {
    if (!models.has(job.model)) models.set(job.model, await tfconv.loadGraphModel(fileHandler(job.model)));
    const model = models.get(job.model);
    const feeds = {};
    for (const [name, spec] of Object.entries(job.inputs)) feeds[name] = readInput(spec);
    const t0 = Date.now();
    let outs = model.execute(feeds, job.outputs);
    if (!Array.isArray(outs)) outs = [outs];
    const result = { backend, tfjs: tf.version_core, outputs: {} };
    for (let i = 0; i < outs.length; i++) {
      result.outputs[job.outputs[i]] = { shape: outs[i].shape, data: Array.from(await outs[i].data()) };
    }
    fs.writeFileSync(job.out, JSON.stringify(result));
    console.log(`${path.basename(job.model)} -> ${job.out} (${Date.now() - t0} ms)`);
    tf.dispose([...outs, ...Object.values(feeds)]);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
