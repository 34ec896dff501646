"""The catalogue of fashion styles a member can pick as favourites (ids are stable)."""

STYLES: dict[int, str] = {
    1: "minimal",
    2: "street",
    3: "casual",
    4: "classic",
    5: "vintage",
    6: "sporty",
    7: "bohemian",
    8: "formal",
    9: "workwear",
    10: "preppy",
    11: "gothic",
    12: "techwear",
}
MAX_FAVORITE_STYLES = 5
