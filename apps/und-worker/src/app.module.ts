import { Module } from '@nestjs/common';
import { ArtifactStore, CONFIG, loadConfigOrExit, TelemetryShutdown, type Config } from '@lavida/config';
import { loadModelFromConfig, ModelPackage } from '@lavida/model';
import { GenPeerRepository } from './repositories/gen-peer.repository.js';
import { PeerServerService } from './services/peer-server.service.js';
import { UnderstandingProcessor } from './services/understanding.processor.js';
import { UnderstandingService } from './services/understanding.service.js';
import { workerRegistryProvider } from './services/worker-registry.provider.js';

@Module({
  providers: [
    { provide: CONFIG, useFactory: () => loadConfigOrExit() },
    { provide: ModelPackage, useFactory: (config: Config) => loadModelFromConfig(config, 'und'), inject: [CONFIG] },
    { provide: ArtifactStore, useFactory: (config: Config) => new ArtifactStore(config), inject: [CONFIG] },
    GenPeerRepository,
    workerRegistryProvider,
    PeerServerService,
    UnderstandingService,
    UnderstandingProcessor,
    TelemetryShutdown,
  ],
})
export class AppModule {}
