"""The 68-point 3D mean face used for head pose (``kpdesk.vision.headpose``).

Source: made by this repository, ``scripts/fit_mean_face.py``; no third-party 3D model was
copied. The x / y layout and the depth profile are a rigid structure-from-motion fit
(Tomasi-Kanade factorisation, then alternating least squares with Huber weights) to the
2D labels of the 4,526 training faces of the shared ``face68`` pack (300W AFW / HELEN and
YouTube-Faces frames, iBUG 68-point order), made mirror-symmetric. 2D labels cannot fix
the depth scale (a deep face turned a little looks like a flat face turned a lot), so the
depth scale (x 0.85) and the meaning of "looking straight at the camera" (a 10.3 degree
pitch) were set to agree best with MediaPipe's Face Landmarker run locally on 532 AFW /
HELEN training photos; after that the median angle between its head rotations and ours
(from the labels) is 5.4 degrees. The numbers are a statistic of research-only labels, so
they carry the same terms as the models in ``models/`` (research, non-commercial use).

Frame (the camera's, for a face looking straight at it): x to the image's right, y down,
z away from the camera; origin at the centroid of the 68 points. Millimetres, scaled so
that the outer eye corners (36, 45) are 90 mm apart (an adult average); the scale only
affects the distance estimate, not the angles. Contour points (0-16) slide over the face
as it turns, so head pose does not use them.
"""

from __future__ import annotations

import numpy as np

MEAN_FACE_68_MM = np.array([
    [  -77.03,   -32.81,    62.93],  # 0
    [  -76.09,   -13.39,    56.79],  # 1
    [  -73.01,     4.76,    53.72],  # 2
    [  -69.13,    22.39,    51.22],  # 3
    [  -62.40,    40.93,    45.03],  # 4
    [  -51.14,    56.05,    33.36],  # 5
    [  -38.44,    66.09,    17.97],  # 6
    [  -22.58,    74.41,     0.66],  # 7
    [    0.00,    79.41,    -5.12],  # 8
    [   22.58,    74.41,     0.66],  # 9
    [   38.44,    66.09,    17.97],  # 10
    [   51.14,    56.05,    33.36],  # 11
    [   62.40,    40.93,    45.03],  # 12
    [   69.13,    22.39,    51.22],  # 13
    [   73.01,     4.76,    53.72],  # 14
    [   76.09,   -13.39,    56.79],  # 15
    [   77.03,   -32.81,    62.93],  # 16
    [  -59.45,   -53.78,    14.76],  # 17
    [  -50.40,   -61.17,     2.33],  # 18
    [  -38.63,   -63.87,    -6.12],  # 19
    [  -27.46,   -63.04,   -11.56],  # 20
    [  -17.33,   -60.22,   -14.52],  # 21
    [   17.33,   -60.22,   -14.52],  # 22
    [   27.46,   -63.04,   -11.56],  # 23
    [   38.63,   -63.87,    -6.12],  # 24
    [   50.40,   -61.17,     2.33],  # 25
    [   59.45,   -53.78,    14.76],  # 26
    [    0.00,   -40.23,   -18.69],  # 27
    [    0.00,   -27.69,   -28.42],  # 28
    [    0.00,   -15.81,   -38.82],  # 29
    [    0.00,    -4.84,   -42.52],  # 30
    [  -13.27,     4.79,   -20.75],  # 31
    [   -7.39,     6.29,   -25.03],  # 32
    [    0.00,     7.87,   -27.15],  # 33
    [    7.39,     6.29,   -25.03],  # 34
    [   13.27,     4.79,   -20.75],  # 35
    [  -45.00,   -39.06,     6.76],  # 36
    [  -37.53,   -42.63,    -0.87],  # 37
    [  -28.19,   -42.66,    -1.59],  # 38
    [  -19.67,   -38.26,     0.02],  # 39
    [  -27.83,   -35.99,    -1.64],  # 40
    [  -37.51,   -35.86,     0.70],  # 41
    [   19.67,   -38.26,     0.02],  # 42
    [   28.19,   -42.66,    -1.59],  # 43
    [   37.53,   -42.63,    -0.87],  # 44
    [   45.00,   -39.06,     6.76],  # 45
    [   37.51,   -35.86,     0.70],  # 46
    [   27.83,   -35.99,    -1.64],  # 47
    [  -27.02,    30.28,    -5.87],  # 48
    [  -17.67,    24.11,   -19.10],  # 49
    [   -6.32,    20.47,   -26.10],  # 50
    [    0.00,    21.75,   -26.83],  # 51
    [    6.32,    20.47,   -26.10],  # 52
    [   17.67,    24.11,   -19.10],  # 53
    [   27.02,    30.28,    -5.87],  # 54
    [   17.36,    37.92,   -15.89],  # 55
    [    8.68,    41.96,   -21.24],  # 56
    [    0.00,    42.71,   -22.39],  # 57
    [   -8.68,    41.96,   -21.24],  # 58
    [  -17.36,    37.92,   -15.89],  # 59
    [  -24.53,    30.11,    -6.50],  # 60
    [   -7.71,    27.37,   -21.88],  # 61
    [    0.00,    27.24,   -23.54],  # 62
    [    7.71,    27.37,   -21.88],  # 63
    [   24.53,    30.11,    -6.50],  # 64
    [    7.67,    32.85,   -20.16],  # 65
    [    0.00,    33.52,   -21.36],  # 66
    [   -7.67,    32.85,   -20.16],  # 67
])
MEAN_FACE_68_MM.setflags(write=False)
