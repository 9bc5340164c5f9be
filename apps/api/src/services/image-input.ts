import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BadRequestException } from '@nestjs/common';
import { PNG } from 'pngjs';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The image size of the served model, from its package's manifest (the api loads no segments). */
export function modelImageSize(modelDir: string): { width: number; height: number } {
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8')) as { image: { width: number; height: number } };
  return { width: manifest.image.width, height: manifest.image.height };
}

const invalid = (field: string, message: string) =>
  new BadRequestException({ code: 'invalid_image', field, message: `${field}: ${message}` });

/**
 * An input image from a request: base64 (or a `data:image/png;base64,` URL) of a PNG of the
 * model's size. Returns the PNG bytes; anything else is a 400 naming the field.
 */
export function parseImageInput(value: string, field: string, size: { width: number; height: number }): Buffer {
  const match = /^data:([^;,]+)?(;base64)?,(.*)$/s.exec(value);
  if (match && match[1] !== 'image/png') throw invalid(field, `must be a PNG (got a ${match[1] ?? 'text'} data URL)`);
  if (match && !match[2]) throw invalid(field, 'data URL must be base64');
  const text = (match ? match[3] : value).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) throw invalid(field, 'is not base64');
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length < 8 || !bytes.subarray(0, 8).equals(PNG_SIGNATURE)) throw invalid(field, 'is not a PNG');
  let png: PNG;
  try {
    png = PNG.sync.read(bytes);
  } catch (error) {
    throw invalid(field, `is a corrupt PNG (${(error as Error).message})`);
  }
  if (png.width !== size.width || png.height !== size.height) {
    throw invalid(field, `is ${png.width}x${png.height}, the model takes ${size.width}x${size.height}`);
  }
  return bytes;
}
