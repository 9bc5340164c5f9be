import { Module } from '@nestjs/common';
import { CONFIG, loadConfigOrExit, type Config } from '@lavida/config';
import { loadModelFromConfig, ModelPackage } from '@lavida/model';
import { ArtifactRepository } from './repositories/artifact.repository.js';
import { PeerRepository } from './repositories/peer.repository.js';
import { GenerationProcessor } from './services/generation.processor.js';
import { GenerationService } from './services/generation.service.js';
import { GrpcServerService } from './services/grpc-server.service.js';

@Module({
  providers: [
    { provide: CONFIG, useFactory: () => loadConfigOrExit() },
    { provide: ModelPackage, useFactory: (config: Config) => loadModelFromConfig(config, 'gen'), inject: [CONFIG] },
    ArtifactRepository,
    PeerRepository,
    GenerationService,
    GenerationProcessor,
    GrpcServerService,
  ],
})
export class AppModule {}
