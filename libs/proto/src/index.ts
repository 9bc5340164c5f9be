export * from './gen/lavida/tensor/v1/tensor_pb.js';
export * from './gen/lavida/peer/v1/peer_pb.js';
export * from './gen/lavida/model/v1/model_pb.js';
export { grpcServiceDefinition } from './grpc.js';
export { create, fromBinary, toBinary } from '@bufbuild/protobuf';
