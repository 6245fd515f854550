// Shared by the reference and benchmark scripts: the TF.js backend named on the command line, and a loader
// of graph models (model.json + its .bin shards) from disk for @tensorflow/tfjs-converter.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

// Sets the backend given as `--backend NAME` in `args` (else `fallback`); returns its name.
export async function useBackend(args, fallback) {
  const backend = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : fallback;
  if (backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend(backend);
  await tf.ready();
  return backend;
}


export function fileHandler(modelJson) {
  return {
    load: async () => {
      const spec = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
      const dir = path.dirname(modelJson);
      const weightSpecs = [];
      const buffers = [];
      for (const group of spec.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(buffers);
      return {
        modelTopology: spec.modelTopology,
        format: spec.format,
        generatedBy: spec.generatedBy,
        convertedBy: spec.convertedBy,
        signature: spec.signature,
        userDefinedMetadata: spec.userDefinedMetadata,
        weightSpecs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
      };
    },
  };
}
