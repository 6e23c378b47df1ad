"""The control plane: every live call, its participants, the admission probe, the quality
controller and the pre-call test. Talks to media only through the Protocols of ``sfu.calls.media``
and to the edge only through the ``sfu.calls.events`` interfaces."""
