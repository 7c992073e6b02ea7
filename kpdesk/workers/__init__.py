"""Qt threads and processes, no widgets: capture, inference, training jobs.

Qt-free helpers live here too because only the workers and the GUI use them:
``mailbox`` (latest-wins slot), ``occlusion`` (synthetic occluders), ``recorder``
(landmark logs), ``stats`` (rolling series), ``model_install`` (atomic model install).
"""
