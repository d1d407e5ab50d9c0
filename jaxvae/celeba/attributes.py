"""CelebA's 40 attribute names and the caveats the bias report prints beside them."""

from typing import Mapping

ATTR_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")


# Caveats the bias report prints next to each attribute.
NOISY_LABEL = ("noisy label: nearly random on relabeling (2023 study); treat as weak evidence")
OCCLUSION = "occludes part of the face"
CONFOUNDER = "strong confounder: correlated with many other attributes"
ATTRIBUTE_NOTES: Mapping[str, str] = {
    "Pale_Skin": ("the only skin-tone label; 'not pale' does not mean dark skin, so CelebA cannot "
                  "measure a skin-tone gap"),
    "Eyeglasses": OCCLUSION + "; correlated with Male and age",
    "Wearing_Hat": OCCLUSION,
    "Bangs": OCCLUSION + " (forehead)",
    "5_o_Clock_Shadow": "facial hair; " + OCCLUSION,
    "Goatee": "facial hair; " + OCCLUSION,
    "Mustache": "facial hair; " + OCCLUSION,
    "Sideburns": "facial hair; " + OCCLUSION,
    "No_Beard": "facial hair (inverted); without it the face is partly occluded",
    "Male": CONFOUNDER,
    "Young": CONFOUNDER + " (age)",
    "Gray_Hair": CONFOUNDER + " (age)",
    "Bald": CONFOUNDER + " (age, Male)",
    "High_Cheekbones": NOISY_LABEL,
    "Pointy_Nose": NOISY_LABEL,
    "Oval_Face": NOISY_LABEL,
    "Attractive": "subjective label",
    "Blurry": "describes the photo, not the face",
}
WEAK_EVIDENCE: frozenset[str] = frozenset(
    name for name, note in ATTRIBUTE_NOTES.items() if note == NOISY_LABEL)

# Where each file of the official layout may sit under the root: flat (torchvision), the Google
