export * from './errors.js';
export * from './queues.js';
export * from './jobs.js';
