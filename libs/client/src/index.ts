export * from './client.js';
export * from './errors.js';
export * from './types.js';
export * from './images.js';
export * from './events.js';
