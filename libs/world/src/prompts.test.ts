import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CATEGORIES,
  backgroundRangeFor,
  checkLuminance,
  checkPrompt,
  luminanceText,
  parseMicroConditioning,
  parsePrompt,
  promptBlindBaseline,
  promptText,
  samplePrompt,
  sceneAgainstPrompt,
  sceneForPrompt,
  scorePrompt,
  withLuminance,
  type PromptSpec,
} from './prompts.js';
import { readImage } from './read.js';
import { render } from './render.js';
import { Rng } from './rng.js';
import type { Scene, SceneObject } from './scene.js';

const o = (shape: SceneObject['shape'], colour: SceneObject['colour'], x: number, y: number): SceneObject => ({
  shape,
  colour,
  size: 'small',
  x,
  y,
});
const scene = (...objects: SceneObject[]): Scene => ({ background: 30, objects });

describe('prompts', () => {
  it('writes each category as the spec does', () => {
    const specs: [PromptSpec, string][] = [
      [{ category: 'single_object', shape: 'circle' }, 'a circle'],
      [{ category: 'two_object', shapes: ['circle', 'square'] }, 'a circle and a square'],
      [{ category: 'counting', shape: 'triangle', count: 3 }, 'three triangles'],
      [{ category: 'colors', colour: 'orange', shape: 'square' }, 'an orange square'],
      [{ category: 'position', shapes: ['circle', 'square'], relation: 'left of' }, 'a circle left of a square'],
      [
        {
          category: 'color_attr',
          objects: [
            { colour: 'red', shape: 'circle' },
            { colour: 'orange', shape: 'triangle' },
          ],
        },
        'a red circle and an orange triangle',
      ],
    ];
    for (const [spec, text] of specs) {
      assert.equal(promptText(spec), text);
      assert.deepEqual(parsePrompt(text), spec);
      assert.deepEqual(parsePrompt(withLuminance(text, 32)), spec);
    }
    assert.equal(parsePrompt('a orange square'), undefined);
    assert.equal(parsePrompt('five circles'), undefined);
    assert.equal(parsePrompt('a circle near a square'), undefined);
  });

  it('for every category, sceneForPrompt passes and sceneAgainstPrompt fails, through the reader', () => {
    const rng = new Rng(77);
    for (const category of CATEGORIES) {
      for (let i = 0; i < 100; i++) {
        const { text, spec } = samplePrompt(rng, category);
        assert.equal(spec.category, category);
        assert.deepEqual(parsePrompt(text), spec);
        const good = sceneForPrompt(rng, spec);
        assert.ok(scorePrompt(spec, readImage(render(good))), `${text} should pass`);
        const bad = sceneAgainstPrompt(rng, spec);
        assert.equal(scorePrompt(spec, readImage(render(bad))), false, `${text} should fail`);
      }
    }
  });

  it('applies the pass rules to hand-built scenes', () => {
    const circleLeftOfSquare = scene(o('circle', 'red', 5, 20), o('square', 'blue', 40, 24));
    assert.ok(checkPrompt({ category: 'single_object', shape: 'circle' }, circleLeftOfSquare));
    assert.equal(checkPrompt({ category: 'single_object', shape: 'triangle' }, circleLeftOfSquare), false);
    assert.ok(checkPrompt({ category: 'two_object', shapes: ['square', 'circle'] }, circleLeftOfSquare));
    assert.equal(checkPrompt({ category: 'two_object', shapes: ['square', 'triangle'] }, circleLeftOfSquare), false);
    assert.ok(checkPrompt({ category: 'position', shapes: ['circle', 'square'], relation: 'left of' }, circleLeftOfSquare));
    assert.ok(checkPrompt({ category: 'position', shapes: ['square', 'circle'], relation: 'right of' }, circleLeftOfSquare));
    assert.equal(checkPrompt({ category: 'position', shapes: ['circle', 'square'], relation: 'right of' }, circleLeftOfSquare), false);
    assert.equal(checkPrompt({ category: 'position', shapes: ['circle', 'square'], relation: 'above' }, circleLeftOfSquare), false);
    assert.ok(checkPrompt({ category: 'colors', colour: 'blue', shape: 'square' }, circleLeftOfSquare));
    assert.equal(checkPrompt({ category: 'colors', colour: 'blue', shape: 'circle' }, circleLeftOfSquare), false);
    const attr: PromptSpec = {
      category: 'color_attr',
      objects: [
        { colour: 'red', shape: 'circle' },
        { colour: 'blue', shape: 'square' },
      ],
    };
    assert.ok(checkPrompt(attr, circleLeftOfSquare));
    // Attributes swapped between the objects: fails.
    assert.equal(checkPrompt(attr, scene(o('circle', 'blue', 5, 20), o('square', 'red', 40, 24))), false);
    // Counting is exact: three circles are not two.
    const three = scene(o('circle', 'red', 2, 2), o('circle', 'red', 20, 2), o('circle', 'red', 40, 2), o('square', 'red', 2, 30));
    assert.ok(checkPrompt({ category: 'counting', shape: 'circle', count: 3 }, three));
    assert.equal(checkPrompt({ category: 'counting', shape: 'circle', count: 2 }, three), false);
    assert.equal(checkPrompt({ category: 'counting', shape: 'circle', count: 4 }, three), false);
    // A clean read is required: an unclean image fails even a satisfied prompt.
    const read = readImage(render(circleLeftOfSquare));
    assert.ok(scorePrompt({ category: 'single_object', shape: 'circle' }, read));
    assert.equal(scorePrompt({ category: 'single_object', shape: 'circle' }, { ...read, clean: false }), false);
  });

  it('writes and checks LUMINANCE micro-conditioning', () => {
    assert.equal(luminanceText(32), 'LUMINANCE : 0.125;');
    assert.equal(luminanceText(8), 'LUMINANCE : 0.031;');
    assert.equal(luminanceText(64), 'LUMINANCE : 0.251;');
    assert.equal(withLuminance('a circle', 32), 'a circle LUMINANCE : 0.125;');
    assert.deepEqual(parseMicroConditioning('a circle LUMINANCE : 0.125;'), { prompt: 'a circle', luminance: 0.125 });
    assert.deepEqual(parseMicroConditioning('a circle'), { prompt: 'a circle' });
    assert.ok(checkLuminance(0.125, 32));
    assert.ok(checkLuminance(0.125, 39)); // 0.1529: within 0.03
    assert.equal(checkLuminance(0.125, 40), false); // 0.1569
    assert.equal(checkLuminance(0.125, 24), false); // 0.0941
    assert.ok(checkLuminance(0.125, 25)); // 0.0980
    assert.deepEqual(backgroundRangeFor(0.125), [25, 39]);
    for (let g = 8; g <= 64; g++) {
      const value = Number(parseMicroConditioning(luminanceText(g)).luminance);
      assert.ok(checkLuminance(value, readImage(render({ background: g, objects: [] })).background));
    }
  });

  it('prompt-blind baseline is low (about 0.20 overall)', () => {
    const result = promptBlindBaseline(new Rng(2024), 2000);
    console.log(
      `prompt-blind baseline: ${Object.entries(result.perCategory)
        .map(([c, v]) => `${c} ${v.toFixed(3)}`)
        .join(', ')}; overall ${result.overall.toFixed(3)}`,
    );
    assert.ok(result.overall > 0.1 && result.overall < 0.3, `overall ${result.overall}`);
    assert.ok(result.perCategory.single_object > result.perCategory.color_attr);
  });
});
