// The default top-down pipeline run by the original TF.js graphs with @tensorflow/tfjs (wasm backend, one
// thread under Node): CenterNet on the image stretched to 512x512, persons scoring > DET_THR, then MoveNet
// Thunder on a 256x256 crop of each box (expanded to a square x1.25, as posekit crops). The reference that
// `tools/bench_vs_tfjs.py` compares `posekit predict` with. JPEG decoding is excluded: the images arrive
// as raw RGB bytes, all read before the clock starts.
//
// usage: node bench_pipeline.mjs JOB.json [--backend wasm|cpu]
// JOB.json: {"centernet": "path/model.json", "thunder": "path/model.json", "det_thr": 0.2,
//            "images": [{"file": "x.rgb", "height": H, "width": W}, ...]}
// prints one JSON line: images, persons, seconds, ms_per_image, backend, tfjs version.
import fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';
import { fileHandler, useBackend } from './tfjs_common.mjs';

// Square box around (x1, y1, x2, y2), grown by `margin`: posekit's expand_box with aspect 1.
function squareBox(x1, y1, x2, y2, margin) {
  const cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
  const side = Math.max(x2 - x1, y2 - y1, 1) * margin;
  return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2];
}

function estimate(image, centernet, thunder, detThr) {
  return tf.tidy(() => {
    const [h, w] = image.shape;
    const batch = tf.expandDims(tf.cast(image, 'float32'));
    const resized = tf.image.resizeBilinear(batch, [512, 512], false, true);
    const det = centernet.execute({ 'tower_0/images': resized }, 'tower_0/detections').dataSync(); // [1,100,6]
    const boxes = [];
    for (let i = 0; i < 100; i++) {
      const [x1, y1, x2, y2, score, cls] = det.slice(i * 6, i * 6 + 6);
      if (cls === 0 && score > detThr) {
        const b = squareBox(x1 * w / 512, y1 * h / 512, x2 * w / 512, y2 * h / 512, 1.25);
        boxes.push([b[1] / (h - 1), b[0] / (w - 1), b[3] / (h - 1), b[2] / (w - 1)]); // normalised y1, x1, y2, x2
      }
    }
    const poses = [];
    for (const box of boxes) {
      const crop = tf.image.cropAndResize(batch, [box], [0], [256, 256]);
      poses.push(thunder.execute({ input: tf.cast(crop, 'int32') }, 'Identity:0').dataSync());
    }
    return poses.length;
  });
}

async function main() {
  const args = process.argv.slice(2);
  const backend = await useBackend(args, 'wasm');
  const job = JSON.parse(fs.readFileSync(args[0], 'utf8'));
  const centernet = await tfconv.loadGraphModel(fileHandler(job.centernet));
  const thunder = await tfconv.loadGraphModel(fileHandler(job.thunder));
  const images = job.images.map((im) => tf.tensor3d(new Uint8Array(fs.readFileSync(im.file)), [im.height, im.width, 3], 'int32'));
  estimate(images[0], centernet, thunder, job.det_thr); // warm-up (wasm compiles kernels on first use), not timed
  const t0 = process.hrtime.bigint();
  let persons = 0;
  for (const image of images) persons += estimate(image, centernet, thunder, job.det_thr);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ name: 'tfjs_topdown_thunder', backend, tfjs: tf.version_core, images: images.length, persons,
    seconds, ms_per_image: (1000 * seconds) / images.length }));
}

main().catch((e) => { console.error(e); process.exit(1); });
