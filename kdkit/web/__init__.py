"""The student in a web page (``kdkit web``): the page folder made from an export (:mod:`kdkit.web.page`), the
JavaScript it runs (:mod:`kdkit.web.runtime`), and occlusion, the page's token heatmap, computed the same way in
Python (:mod:`kdkit.web.occlusion`). The page itself is in ``assets/``; its record is
:mod:`kdkit.records.web_record`. Nothing here imports torch or transformers."""
