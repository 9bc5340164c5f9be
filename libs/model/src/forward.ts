import { positionsTensor } from './joint.js';
import { textTail } from './text-layers.js';
import type { ModelPackage, Tensor } from './package.js';

/**
 * One full forward of both branches in this process, composed from the segments with the
 * partial-attention merge: text logits [rows, T, V] and image logits [rows, I, K]. The training
 * framework's own forward must agree with it (golden vectors).
 */
export async function jointForward(pkg: ModelPackage, textIds: Tensor, imageIds: Tensor): Promise<{ textLogits: Tensor; imageLogits: Tensor }> {
  const textLen = textIds.dims[1];
  const imageLen = imageIds.dims[1];
  const textPositions = positionsTensor(0, textLen);
  const imagePositions = positionsTensor(textLen, imageLen);
  let text = (await pkg.run('und_embed', { text_ids: textIds })).hidden;
  let image = (await pkg.run('gen_embed', { image_ids: imageIds })).hidden;
  for (let layer = 0; layer < pkg.manifest.architecture.joint_layers; layer++) {
    const { q, k, v } = await pkg.run(`und_joint_qkv_${layer}`, { hidden: text, positions: textPositions });
    const out = await pkg.run(`gen_joint_${layer}`, { hidden: image, positions: imagePositions, text_q: q, text_k: k, text_v: v });
    image = out.hidden_out;
    text = (await pkg.run(`und_joint_out_${layer}`, { hidden: text, q, k, v, remote_out: out.text_out, remote_lse: out.text_lse })).hidden_out;
  }
  const textLogits = await textTail(pkg, text, textPositions);
  const imageLogits = (await pkg.run('gen_tail', { hidden: image, positions: imagePositions })).logits;
  return { textLogits, imageLogits };
}
