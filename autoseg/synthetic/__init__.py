"""Synthetic stroke data in the layouts real sources ship (``autoseg_synth``, the demo).

:mod:`~autoseg.synthetic.generate` is the entry (:func:`~autoseg.synthetic.generate.synthesize`);
anatomy, lesions, fields (bias, noise), rendering (site looks) and writers (BIDS, PNG, npy)
are its parts. It writes data as users keep it, so the converters in :mod:`autoseg.data`
read it like any real source; nothing in the dataset layer imports it.
"""
