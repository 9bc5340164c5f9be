export * from './manifest.js';
export * from './package.js';
export * from './tokenizer.js';
export * from './sampling.js';
export * from './joint.js';
export * from './png.js';
export * from './text-to-image.js';
export * from './forward.js';
