/**
 * @lavida/world: the synthetic Shapes world (shared/spec/shapes-world.md), defined once for the whole
 * project: seeded scenes, the renderer, the read-back reader, every task's text and scorer, and the
 * training shard format.
 */
export * from './rng.js';
export * from './scene.js';
export * from './render.js';
export * from './read.js';
export * from './text.js';
export * from './prompts.js';
export * from './questions.js';
export * from './grounding.js';
export * from './edits.js';
export * from './plans.js';
export * from './reflection.js';
export * from './shards.js';
export * from './scoring.js';
