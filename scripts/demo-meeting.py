#!/usr/bin/env python3
"""Synthesize a 3-speaker meeting for `just demo`: one audio track per participant, as Daily
delivers them (each track starts when its participant joined), plus recording.json with the
names and offsets. Real speech from espeak-ng, three different voices, about three minutes of
dialogue on clear topics (release date, marketing budget, hiring, customer feedback).

usage: demo-meeting.py OUT_DIR [--repeat N]   synthesize the meeting (its dialogue N times)
       demo-meeting.py --transcript  print the dialogue as `Name: text` lines
       demo-meeting.py --facts       print the facts a summary should carry (JSON)
"""

# The meeting itself (speakers, dialogue, facts) is eval/meetings/demo.json, one meeting of the
# evaluation set (eval/README.md); scripts/meeting.py synthesizes any of them. This script keeps
# the demo's command line and output as they were when the meeting lived here.

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import meeting  # noqa: E402


def main():
    demo = meeting.load("demo")
    if sys.argv[1:] == ["--facts"]:
        print(json.dumps([{"fact": f["fact"], "patterns": f["patterns"]} for f in demo["facts"]],
                         indent=2))
        return
    if sys.argv[1:] == ["--transcript"]:
        print(meeting.transcript(demo))
        return
    args = sys.argv[1:]
    repeat = 1
    if len(args) == 3 and args[1] == "--repeat":
        repeat = int(args[2])
        args = args[:1]
    if len(args) != 1:
        sys.exit(__doc__)
    meeting.synth(demo, args[0], repeat)


if __name__ == "__main__":
    main()
