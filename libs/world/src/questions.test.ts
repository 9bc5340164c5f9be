import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  QUESTION_KINDS,
  answerQuestion,
  describeScene,
  parseQuestion,
  questionText,
  sampleQuestion,
  scoreAnswer,
  type QuestionSpec,
} from './questions.js';
import { readImage } from './read.js';
import { render } from './render.js';
import { Rng } from './rng.js';
import { generateScene, type Scene } from './scene.js';

const scene: Scene = {
  background: 30,
  objects: [
    { shape: 'square', colour: 'blue', size: 'large', x: 40, y: 40 },
    { shape: 'circle', colour: 'red', size: 'small', x: 5, y: 5 },
    { shape: 'circle', colour: 'orange', size: 'large', x: 30, y: 4 },
    { shape: 'triangle', colour: 'red', size: 'small', x: 4, y: 40 },
  ],
};

describe('questions', () => {
  it('answers the six forms exactly on a hand-built scene', () => {
    const cases: [QuestionSpec, string, string][] = [
      [{ kind: 'count_shape', shape: 'circle' }, 'how many circles are there?', 'two'],
      [{ kind: 'count_shape', shape: 'triangle' }, 'how many triangles are there?', 'one'],
      [{ kind: 'count_colour', colour: 'red' }, 'how many red objects are there?', 'two'],
      [{ kind: 'count_colour', colour: 'green' }, 'how many green objects are there?', 'zero'],
      [{ kind: 'colour_of', ref: 'the small circle' }, 'what colour is the small circle?', 'red'],
      [{ kind: 'shape_of', ref: 'the blue square' }, 'what shape is the blue square?', 'square'],
      [{ kind: 'exists', colour: 'orange', shape: 'circle' }, 'is there an orange circle?', 'yes'],
      [{ kind: 'exists', colour: 'orange', shape: 'square' }, 'is there an orange square?', 'no'],
      // Reading order: by centre y (11, 14, 50, 46 -> circle 11, orange 14, triangle 46, square 50), then x.
      [{ kind: 'describe' }, 'describe the image.', 'small red circle, large orange circle, small red triangle, large blue square'],
    ];
    for (const [spec, text, answer] of cases) {
      assert.equal(questionText(spec), text);
      assert.deepEqual(parseQuestion(text), spec);
      assert.equal(answerQuestion(spec, scene), answer, text);
    }
    assert.equal(answerQuestion({ kind: 'colour_of', ref: 'the circle' }, scene), undefined);
  });

  it('orders the description left to right within a row', () => {
    const row: Scene = {
      background: 30,
      objects: [
        { shape: 'square', colour: 'green', size: 'small', x: 40, y: 10 },
        { shape: 'circle', colour: 'purple', size: 'small', x: 10, y: 10 },
      ],
    };
    assert.equal(describeScene(row), 'small purple circle, small green square');
  });

  it('scores exact matches only', () => {
    assert.ok(scoreAnswer('Two', 'two'));
    assert.ok(scoreAnswer(' yes. ', 'yes'));
    assert.equal(scoreAnswer('2', 'two'), false);
    assert.equal(scoreAnswer('small red circle', 'small red circle, large blue square'), false);
  });

  it('sampled questions are answered the same from the read-back image', () => {
    const rng = new Rng(31);
    const seen = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const s = generateScene(rng);
      const q = sampleQuestion(rng, s);
      seen.add(q.spec.kind);
      assert.deepEqual(parseQuestion(q.text), q.spec);
      assert.equal(answerQuestion(q.spec, readImage(render(s)).scene), q.answer);
    }
    assert.equal(seen.size, QUESTION_KINDS.length);
  });
});
