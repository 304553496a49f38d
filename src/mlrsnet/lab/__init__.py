"""The lab: tasks and data, baselines, runs, reports, the demo and the command line.

It sits on top of the core library (:mod:`mlrsnet`), which never imports it, and needs the
``lab`` extra (``pip install "mlrsnet[lab]"``): scikit-learn, matplotlib, tqdm,
schedulefree and prodigyopt. Its modules:

- :mod:`~mlrsnet.lab.protocol`: the one training-step protocol every method implements;
- :mod:`~mlrsnet.lab.baselines`: the baselines behind one factory, and MLR-SNet transfer;
- :mod:`~mlrsnet.lab.hypergradient`: SGD-HD, RTHO and L4 (baselines from their papers);
- :mod:`~mlrsnet.lab.tasks`: data, splits, label noise, augmentation, models, the task table;
- :mod:`~mlrsnet.lab.rundir`: the run-directory format (files, checkpoint, summary);
- :mod:`~mlrsnet.lab.probing`: the library's learning-rate probe on a lab task;
- :mod:`~mlrsnet.lab.runner`: resumable training and meta-training runs;
- :mod:`~mlrsnet.lab.report`: tables and plots from run directories;
- :mod:`~mlrsnet.lab.demo` and :mod:`~mlrsnet.lab.cli`: the ``mlrsnet`` command.
"""
