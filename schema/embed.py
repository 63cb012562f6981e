#!/usr/bin/env python3
"""Turns a text file into a C file defining `const char NAME[]` with its text."""
import sys

name, src, dst = sys.argv[1:4]
with open(src, encoding='utf-8') as f:
    text = f.read()
lines = []
for line in text.splitlines(True):
    esc = line.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    lines.append('\t"%s"' % esc)
with open(dst, 'w', encoding='utf-8') as f:
    f.write('/* Generated from %s by schema/embed.py; do not edit. */\n' % src.split('/')[-1])
    f.write('extern const char %s[];\n' % name)
    f.write('const char %s[] =\n%s;\n' % (name, '\n'.join(lines) or '\t""'))
