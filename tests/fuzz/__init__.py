"""Bad-input fuzzing of the ``cachectl`` console script.

``corpus`` holds the inputs as data and the runner shared by the tests and the
report; ``test_bad_inputs`` runs every case through the installed console script;
``test_properties`` drives generated inputs through Click's test runner; ``report``
prints the outcome table docs/reliability.md quotes.
"""
