export * from './errors.js';
export * from './queues.js';
export * from './jobs.js';
export * from './webhooks.js';
export * from './views.js';
