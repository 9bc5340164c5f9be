import { PNG } from 'pngjs';
import { InvalidInputError } from '@lavida/contracts';

/** Encodes packed RGB pixels (height x width x 3) as an 8-bit RGB PNG. */
export function encodePng(rgb: Uint8Array, width: number, height: number): Buffer {
  if (rgb.length !== width * height * 3) throw new Error(`expected ${width * height * 3} RGB bytes, got ${rgb.length}`);
  const png = new PNG({ width, height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/** Decodes a PNG into packed RGB pixels. */
export function decodePng(bytes: Buffer): { width: number; height: number; rgb: Uint8Array } {
  const png = PNG.sync.read(bytes);
  const rgb = new Uint8Array(png.width * png.height * 3);
  for (let i = 0, j = 0; i < png.data.length; i += 4, j += 3) {
    rgb[j] = png.data[i];
    rgb[j + 1] = png.data[i + 1];
    rgb[j + 2] = png.data[i + 2];
  }
  return { width: png.width, height: png.height, rgb };
}

/**
 * An input image for the model: a PNG of exactly the model's size, as packed RGB. Anything else
 * is an InvalidInputError naming the problem.
 */
export function decodeImageInput(bytes: Buffer, size: { width: number; height: number }, what = 'image'): Uint8Array {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (bytes.length < 8 || !bytes.subarray(0, 8).equals(signature)) throw new InvalidInputError(`${what} is not a PNG`);
  let decoded: { width: number; height: number; rgb: Uint8Array };
  try {
    decoded = decodePng(bytes);
  } catch (error) {
    throw new InvalidInputError(`${what} is a corrupt PNG (${(error as Error).message})`);
  }
  if (decoded.width !== size.width || decoded.height !== size.height) {
    throw new InvalidInputError(`${what} is ${decoded.width}x${decoded.height}, the model takes ${size.width}x${size.height}`);
  }
  return decoded.rgb;
}
