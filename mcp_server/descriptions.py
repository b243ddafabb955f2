"""What each tool tells the model that calls it. Written for an assistant: what to pass, what comes
back, and that every result is a second-look aid, never a diagnosis."""

from __future__ import annotations

from typing import Final

DISCLAIMER: Final = (
    "Research and educational QA only: not a medical device and not a diagnosis. Flags ask a qualified "
    "reader to look again; the reader decides."
)

SIDES: Final = (
    "Sides: box x runs across the IMAGE, not the patient. On a PA or AP frontal film in the standard "
    "display the image's left half (small x) is the patient's RIGHT and the image's right half is the "
    "patient's LEFT; a lateral film has no left/right in x. Never state a patient's side from raw box "
    "coordinates: quote the draft's side and the LATERALITY flag's message, which does the mapping."
)

INSTRUCTIONS: Final = (
    "CXR Draft Auditor compares a chest X-ray with a radiologist's draft impression and flags where they "
    "seem to disagree. Call ground_image (image -> findings with boxes), parse_draft (draft -> labels with "
    "verbatim spans), then compare (the two results -> flags); or audit for all three at once, and "
    "render_findings for a picture with the boxes. Present flags as requests for a second look, URGENT "
    "first, quoting the box and the draft phrase for each; never as a diagnosis. A study in a configured "
    "PACS may be named by `study_uid` instead of `image` (find_study_images lists its images). "
    "Clients that render MCP Apps show audit, compare and ground_image results in an interactive viewer as "
    "well; the results themselves are the same. " + SIDES + " " + DISCLAIMER
)

GROUND_IMAGE: Final = (
    "Find up to six labels on a chest X-ray (pleural_effusion, pneumothorax, lung_opacity_consolidation, "
    "nodule_mass, cardiomegaly, or no_finding alone), each with a box in normalised [0, 1] image "
    "coordinates (x0, y0, x1, y1; origin top-left). Pass `image` as a local file path, an http(s) URL, a "
    "data: URI or raw base64 (PNG, JPEG or single-frame DICOM); or, instead, `study_uid` to read a study's "
    "frontal film from the configured PACS (DICOMweb; a note names the instance read and why). Returns a "
    "Grounding: the findings, the "
    "outcome of parsing the model's text (clean / recovered / failed), notes on every repair or drop, the "
    "model that made it, the raw model output, the image's sha256 and size (and the view a DICOM header "
    "states). A failed outcome means the image was NOT read: do not treat it as 'nothing found'. "
    + SIDES
    + " "
    + DISCLAIMER
)

PARSE_DRAFT: Final = (
    "Read a radiologist's draft impression into the same labels: each mention has a status (present, "
    "absent = denied, uncertain = hedged), the verbatim span with character offsets (draft[start:end] == "
    "span), the side (left/right/bilateral) where stated, and the cue words that set the status. Pass the "
    "draft text exactly as written. Returns a DraftReading with the reader that made it and notes (terms "
    "outside the six labels, fallbacks). " + DISCLAIMER
)

COMPARE: Final = (
    "Judge a Grounding (from ground_image) against a DraftReading (from parse_draft), with no model: "
    "MISSING = on the image but denied or not mentioned in the draft; UNSUPPORTED = asserted in the draft "
    "but not marked on the image; URGENT = pneumothorax or nodule/mass on the image; LATERALITY = the "
    "draft puts a finding on one side but every box of it lies on the other side of the film "
    "(LATERALITY.opposite_side), or on both sides (LATERALITY.both_sides_on_image); the message asks "
    "to look at the side again and never says which side is right. Pass the objects as "
    "the tools returned them; you may edit them first (for example remove a finding the user rejected). "
    "`reading` null gives an image-only pass (URGENT only). Optional `context` (age_years, view PA/AP/"
    "lateral) adds cautions for children and AP films; an unknown view is read as frontal (a note says "
    "so) and a lateral view gets no side check. Each flag carries its rule id, the boxes and the draft "
    "spans that produced it, and a message asking for a second look. " + SIDES + " " + DISCLAIMER
)

AUDIT: Final = (
    "Run ground_image, parse_draft and compare in one call. Pass `image` (path, URL, data: URI or base64) "
    "or `study_uid` (a study in the configured PACS) and the `draft` text; an empty draft gives an "
    "image-only pass with URGENT flags only. Optional "
    "`context` (age_years, view). Returns an AuditReport with all three stage results, so every flag can be "
    "traced to a box and a phrase (flags as in compare, LATERALITY included). If the draft reader fails, "
    "the rule reader reads it instead and a note says so. " + SIDES + " " + DISCLAIMER
)

RENDER_FINDINGS: Final = (
    "Draw the findings and flags on the image and return ONLY a picture (PNG or JPEG, longest side capped, "
    "a few hundred KB at most): URGENT boxes red, LATERALITY yellow, MISSING orange, agreed findings green, "
    "UNSUPPORTED listed in the legend. The picture shows the image as displayed: its left is the "
    "patient's right on a frontal film. Pass `image` (or the same `study_uid`), and the `grounding` and "
    "`comparison` you already "
    "have (or a `draft` to audit now, or neither to draw the findings alone). Show it to the user so a "
    "person looks again. " + DISCLAIMER
)

FIND_STUDY_IMAGES: Final = (
    "List the images of a study in the configured DICOMweb archive (PACS), reading no pixels: each "
    "instance's UIDs, modality, view (ViewPosition), rows and columns, and which one an audit of the study "
    "reads (the frontal radiograph: CR or DX, PA before AP; laterals and non-image series such as reports "
    "skipped), each with its reason, and what the study holds counted by modality and view. No patient "
    "identifiers are returned. Pass `study_uid`; then call audit or ground_image with the same `study_uid`, "
    "or with one instance's full .../studies/{s}/series/{r}/instances/{i} reference to read another. "
    + DISCLAIMER
)

PREVIEW_IMAGE: Final = (
    "For the audit viewer (an MCP Apps UI), not for the conversation: a downscaled JPEG of the image a "
    "result was made from. Pass the `sha256` the result records (grounding.image.sha256) and the same "
    "`image` or `study_uid` the result was made from; without them, an image this server read lately for "
    "audit or ground_image. The image is read again and refused unless its sha256 matches. " + DISCLAIMER
)

AUDIT_PROMPT: Final = """You are helping a radiologist take a second look at a chest X-ray and their draft
impression. You do not diagnose. {disclaimer}

Image: {image}
Draft impression:
\"\"\"
{draft}
\"\"\"

Work through the tools in order:
1. Call `ground_image` with the image. If its outcome is "failed", say that the image could not be read
   and stop: a failed read is not a normal image.
2. If there is a draft, call `parse_draft` with the draft text, exactly as written. Without one, skip
   this step and pass `reading` null to `compare`: an image-only pass (URGENT flags only).
3. Show both results briefly. If the user disagrees with a finding or a reading, edit that object.
4. Call `compare` with the two results (and `context` if the age or view is known).
5. Call `render_findings` with the image, grounding and comparison, and show the picture.

If a tool answers with an error, tell the user what it says, including any way out it names (fetching
the model weights, another backend, an absolute path), and stop there. Never look at or read the X-ray
yourself in the tool's place: you are not the second reader, the tool's models are.

Present the flags URGENT first, then LATERALITY, then MISSING, then UNSUPPORTED. For each: the label,
where it is, the draft phrase (quote the span) and the flag's own message. For LATERALITY, say that the
draft's side and the side of the marked region disagree and ask the radiologist to check the side; do
not say which side is correct. Box x is image position, not the patient's side: on a frontal film the
image's left half is the patient's right, and a lateral film gives no side, so never state a side from
coordinates yourself. Say where a finding is in words (the side as the draft or the flag's message
gives it; upper, middle or lower zone), never as raw box numbers. Say plainly that these are requests
to look again, that the models are often wrong, and that the radiologist decides. Mention every note
about recovered or failed output, fallbacks, edits and cautions (children, AP films, a view assumed
frontal). If there are no flags, say that the tool found no disagreement, not that the study is normal.
"""
