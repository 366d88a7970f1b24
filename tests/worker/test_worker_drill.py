"""Local mode's turn-taking: the initiator opens, then one line per utterance heard."""

from __future__ import annotations

from worker.drill import VAD_MIN_SILENCE_SECONDS, Turns


def test_the_initiator_opens_and_answers_each_utterance_with_its_next_line():
    turns = Turns(["Radio check.", "Gate four."], speaks_first=True)
    assert turns.opening() == "Radio check."
    assert (turns.said, turns.done) == (1, False)
    assert turns.answer() == "Gate four."
    assert turns.done
    assert turns.answer() is None  # it still hears the last answer, and stays quiet


def test_the_other_side_waits_to_hear_something_before_its_first_line():
    turns = Turns(["Loud and clear."], speaks_first=False)
    assert turns.opening() is None
    assert turns.said == 0
    assert turns.answer() == "Loud and clear."
    assert turns.answer() is None and turns.said == 1


def test_two_scripts_interleave_into_one_conversation():
    dispatcher = Turns(["d1", "d2", "d3"], speaks_first=True)
    driver = Turns(["r1", "r2"], speaks_first=False)
    spoken = [dispatcher.opening()]
    speakers = [driver, dispatcher]
    while (line := speakers[0].answer()) is not None:  # each side answers what it just heard
        spoken.append(line)
        speakers.reverse()
    assert spoken == ["d1", "r1", "d2", "r2", "d3"]


def test_an_empty_script_is_a_silent_listener():
    turns = Turns([], speaks_first=True)
    assert turns.opening() is None and turns.done


def test_the_vad_waits_out_the_pause_between_two_sentences_of_one_line():
    # espeak-ng pauses ~0.5 s between sentences; ending the turn there would
    # make the other side answer mid-line.
    assert VAD_MIN_SILENCE_SECONDS >= 0.7
