"""Text readers on small generated files: what they return and every error's file:line."""

import pytest

from bilstm_jax.data import text
from bilstm_jax.errors import DataFileError

CONLLU = """\
# sent_id = 1
# text = I can't go.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t0:root\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tNew York\tNew York\tPROPN\tNNP\t_\t0\troot\t_\t_
"""


def _write(tmp_path, content, name='f.txt'):
  path = tmp_path / name
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content, encoding='utf-8')
  return str(path)


def test_conllu_words_and_tags(tmp_path):
  path = _write(tmp_path, CONLLU, 'a.conllu')
  got = text.read_conllu(path)
  assert got == [
    (['I', 'ca', "n't", 'go', '.'], ['PRON', 'AUX', 'PART', 'VERB', 'PUNCT']),
    (['New York'], ['PROPN']),  # a FORM may hold a space; only tabs separate columns
  ]
  assert text.read_conllu(path, tag_column='xpos')[0].tags == ['PRP', 'MD', 'RB', 'VB', '.']
  with pytest.raises(ValueError, match='tag_column'):
    text.read_conllu(path, tag_column='lemma')


@pytest.mark.parametrize(
  'bad_line, message',
  [
    (
      '2\tgo\tgo\tVERB\tVB\t_\t0\troot\t_',
      r'f\.conllu:3: expected 10 tab-separated columns, found 9',
    ),
    ('x\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_', r"f\.conllu:3: bad word ID 'x'"),
    ('2-x\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_', r"f\.conllu:3: bad word ID '2-x'"),
    ('3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_', r'f\.conllu:3: word ID 3 where 2 was expected'),
  ],
)
def test_conllu_malformed(tmp_path, bad_line, message):
  good = '1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_'
  path = _write(tmp_path, f'# c\n{good}\n{bad_line}\n', 'f.conllu')
  with pytest.raises(DataFileError, match=message):
    text.read_conllu(path)


def test_conll_2003_layout(tmp_path):
  content = (
    '-DOCSTART- -X- O O\n\n'
    'Acme NNP I-NP I-ORG\nbuilds VBZ I-VP O\nNordic JJ I-NP I-MISC\n\n\n'
    'Ada NNP I-NP I-PER\nQuill NNP I-NP I-PER\n'
    '-DOCSTART- -X- O O\n\n'
    'OSLO NNP I-NP I-LOC\n'
  )
  path = _write(tmp_path, content)
  got = text.read_conll(path)
  assert got == [
    (['Acme', 'builds', 'Nordic'], ['I-ORG', 'O', 'I-MISC']),
    (['Ada', 'Quill'], ['I-PER', 'I-PER']),
    (['OSLO'], ['I-LOC']),
  ]
  assert text.read_conll(path, tag_column=2)[0].tags == ['I-NP', 'I-VP', 'I-NP']
  assert text.read_conll(path, token_column=1, tag_column=0)[2] == (['NNP'], ['OSLO'])


def test_conll_wnut_layout(tmp_path):
  content = '@paul\tO\nloves\tO\nLondon\tB-location\n\r\nthe\tO\nHobbit\tB-creative-work\n'
  got = text.read_conll(_write(tmp_path, content))
  assert got == [
    (['@paul', 'loves', 'London'], ['O', 'O', 'B-location']),
    (['the', 'Hobbit'], ['O', 'B-creative-work']),
  ]


def test_conll_malformed(tmp_path):
  path = _write(tmp_path, 'a NN O\nb NN\n')
  with pytest.raises(DataFileError, match=r'f\.txt:2: 2 columns; the first token line has 3'):
    text.read_conll(path)
  path = _write(tmp_path, 'a O\nb O\n')
  with pytest.raises(DataFileError, match=r'f\.txt:1: 2 columns; .* needs at least 4'):
    text.read_conll(path, tag_column=3)


def test_tsv_with_and_without_header(tmp_path):
  rows = 'the soup was warm . \t1\ncold tea and no chairs \t0\n'
  want = [('the soup was warm .', '1'), ('cold tea and no chairs', '0')]
  assert text.read_tsv(_write(tmp_path, 'sentence\tlabel\n' + rows)) == want
  assert text.read_tsv(_write(tmp_path, rows + '\n')) == want


@pytest.mark.parametrize(
  'content, message',
  [
    (
      'sentence\tlabel\ngood\t1\nno label here\n',
      r'f\.txt:3: expected sentence<TAB>label, found 1',
    ),
    ('good\t1\na\tb\t1\n', r'f\.txt:2: expected sentence<TAB>label, found 3'),
    ('good\t1\n \t0\n', r'f\.txt:2: empty sentence'),
    ('good\t\n', r'f\.txt:1: empty label'),
  ],
)
def test_tsv_malformed(tmp_path, content, message):
  with pytest.raises(DataFileError, match=message):
    text.read_tsv(_write(tmp_path, content))


def test_raw_keeps_one_sentence_per_line(tmp_path):
  path = _write(tmp_path, '\ufeffHello  world !\n\nSecond\tline\n')
  assert text.read_raw(path) == [['Hello', 'world', '!'], [], ['Second', 'line']]


READERS = [text.read_conllu, text.read_conll, text.read_tsv, text.read_raw]


@pytest.mark.parametrize('reader', READERS)
def test_missing_empty_and_undecodable_files(tmp_path, reader):
  missing = str(tmp_path / 'nope.txt')
  with pytest.raises(DataFileError, match=r'nope\.txt: no such file'):
    reader(missing)
  with pytest.raises(DataFileError, match=r'f\.txt: holds no'):
    reader(_write(tmp_path, ''))
  # Latin-1 bytes on line 2 (0xe9 = é) are not UTF-8.
  with pytest.raises(DataFileError, match=r'f\.txt:2: not UTF-8'):
    reader(_write(tmp_path, b'# a\t1\ncaf\xe9\tx\n'))
  with pytest.raises(DataFileError, match='cannot be read'):
    reader(str(tmp_path))  # a directory


def test_comment_only_and_docstart_only_files_are_empty(tmp_path):
  with pytest.raises(DataFileError, match='holds no sentences'):
    text.read_conllu(_write(tmp_path, '# only a comment\n\n'))
  with pytest.raises(DataFileError, match='holds no sentences'):
    text.read_conll(_write(tmp_path, '-DOCSTART- -X- O O\n\n'))
