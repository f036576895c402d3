"""SynthDrive: synthetic labelled driving video with exact optical flow.

A camera on a car drives forward along a straight street and renders, by ray casting (numpy,
vectorised per object over its screen rectangle), a world of axis-aligned boxes and ellipsoids
over a ground plane under a sky:

* ground: road with lane markings (dashed lane dividers, solid edge lines), sidewalks with tiles,
  terrain (grass) beyond; buildings with window grids, walls, fences, hedges, trees (trunk +
  ellipsoid canopy), poles (street lamps), traffic signs and traffic lights on posts;
* parked cars along the curb, cars driving in both directions in their lanes and pedestrians
  walking on the sidewalks, each with its own velocity;
* a camera that sways laterally, yaws with the sway and pitches with the road (bounce).

Every pixel of every frame gets a Cityscapes trainId (and labelId) from the surface its ray hits;
the **backward optical flow** of every frame (for each pixel of frame t, where the same scene
point was in frame t-1) is exact: the hit point is moved back by its object's velocity and
projected into the previous camera; a pixel is marked valid when that point lies inside the
previous frame and was visible there (same surface at that pixel: not occluded).

Per-frame nuisances, which change the image but never the labels, make a per-frame model
flicker: sensor noise (with bursts), brightness flicker (auto-exposure jumps), motion/defocus
blur, and brief semi-transparent occluders (mud splashes, glare) lasting one to three frames.

Everything is deterministic from ``seed`` (sequence i of split s uses its own random stream, so
validation sequences are independent of the training ones), at any resolution (the world is in
metres; intrinsics scale with the image).

Output (``write_dataset``; the whole tree is written to a temporary folder renamed into place):

* ``leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` (Cityscapes video
  layout, 6-digit sequence and frame numbers);
* ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png`` and ``..._labelTrainIds.png``
  for **every** frame;
* ``flow/<split>/<city>/<city>_<seq>_<frame>_flowBackward.png``: backward flow in the KITTI
  16-bit PNG encoding (u = (R - 2^15) / 64, v = (G - 2^15) / 64, B = valid), frames 1..N-1;
* ``bags/<split>/<city>_<seq>/``: a rosbag2 MCAP bag per sequence with ``/camera/image_raw``
  (sensor_msgs/Image rgb8) and ``/camera/labels`` (mono8 trainIds), see :mod:`stt_train.bagwriter`;
* ``synthdrive.json``: generator settings, intrinsics and the list of sequences.

Modules: :mod:`.config` (settings, class ids, intrinsics), :mod:`.elements` (what a world is
made of: objects, camera path, street, appearance), :mod:`.world` (one sequence's world, drawn from
its random stream), :mod:`.layout` (where the objects stand), :mod:`.raycast` (which surface each
pixel's ray hits), :mod:`.shading` (its colour), :mod:`.truth` (labels and exact backward flow),
:mod:`.nuisances` (per-frame image corruptions), :mod:`.dataset` (sequences, files, the
``stt-synthdrive`` CLI).
"""

from stt_train.synthdrive.config import CITY, GENERATOR_VERSION, SynthDriveConfig, intrinsics, train_to_label_id
from stt_train.synthdrive.dataset import (
    Frame,
    frame_stem,
    main,
    read_flow_png,
    render_sequence,
    sequence_rng,
    write_dataset,
    write_flow_png,
)
from stt_train.synthdrive.world import World

__all__ = ["CITY", "GENERATOR_VERSION", "Frame", "SynthDriveConfig", "World", "frame_stem", "intrinsics", "main",
           "read_flow_png", "render_sequence", "sequence_rng", "train_to_label_id", "write_dataset", "write_flow_png"]
