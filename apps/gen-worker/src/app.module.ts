import { Module } from '@nestjs/common';
import { ArtifactStore, CONFIG, loadConfigOrExit, TelemetryShutdown, type Config } from '@lavida/config';
import { loadModelFromConfig, ModelPackage } from '@lavida/model';
import { PeerRepository } from './repositories/peer.repository.js';
import { GenerationProcessor } from './services/generation.processor.js';
import { GenerationService } from './services/generation.service.js';
import { GrpcServerService } from './services/grpc-server.service.js';
import { workerRegistryProvider } from './services/worker-registry.provider.js';

@Module({
  providers: [
    { provide: CONFIG, useFactory: () => loadConfigOrExit() },
    { provide: ModelPackage, useFactory: (config: Config) => loadModelFromConfig(config, 'gen'), inject: [CONFIG] },
    { provide: ArtifactStore, useFactory: (config: Config) => new ArtifactStore(config), inject: [CONFIG] },
    PeerRepository,
    workerRegistryProvider,
    GenerationService,
    GenerationProcessor,
    GrpcServerService,
    TelemetryShutdown,
  ],
})
export class AppModule {}
