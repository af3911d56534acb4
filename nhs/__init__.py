"""NHS identifier rules shared by the tablet (`app`) and the sync library (`sync`), which may not
import each other's code: the NHS number's Modulus 11 check and its display. Standard library
only, so any layer may import it (tests/unit/test_architecture.py keeps it that way)."""
