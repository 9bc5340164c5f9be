export * from './codec.js';
export * from './status.js';
export * from './channel.js';
export * from './frames.js';
export * from './server.js';
export * from './client.js';
export * from './worker-server.js';
export * from './peer-health.js';
