"""Towns, postcodes, streets and telephone numbers for the synthetic cohort.

Postcodes use each town's real postcode area and plausible districts (B15, M1, LS6, SW1A) with
a well-formed inward code, so "matching-ish" addresses exercise postcode search the way real
ones do, without being anyone's real address. Every telephone number is from Ofcom's ranges
reserved for drama and fiction (07700 900xxx, 0121 496 0xxx, 020 7946 0xxx...): synthetic
records shown in a demo must never dial a real person. All organisation names are invented.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from random import Random

from app.synthetic._common import Weighted


@dataclass(frozen=True, slots=True)
class Trust:
    key: str
    name: str
    gp_letter: str  # first letter of this region's GP practice ODS codes


@dataclass(frozen=True, slots=True)
class Town:
    name: str
    trust: str
    phone: str  # key into _PHONE_FORMATS
    districts: tuple[str, ...]
    areas: tuple[str, ...]  # community team areas


TRUSTS: dict[str, Trust] = {
    t.key: t
    for t in (
        Trust("wm", "Arden and Black Country Mental Health NHS Foundation Trust", "M"),
        Trust("mar", "Severn and Marches Partnership NHS Foundation Trust", "M"),
        Trust("nw", "Irwell and Mersey Mental Health NHS Foundation Trust", "P"),
        Trust("yh", "Dales and Humber Care Partnership NHS Foundation Trust", "B"),
        Trust("ne", "Tyne and Tees Valley Mental Health NHS Foundation Trust", "A"),
        Trust("em", "Trent Vale Healthcare NHS Trust", "C"),
        Trust("ls", "Thames Southbank Mental Health NHS Foundation Trust", "G"),
        Trust("ln", "North Thames Riverside NHS Foundation Trust", "F"),
        Trust("lw", "Westway Mental Health NHS Trust", "E"),
        Trust("s", "Solent and Downs Partnership NHS Foundation Trust", "J"),
        Trust("sw", "Avon and Dartmoor Mental Health NHS Trust", "L"),
        Trust("e", "Fens and Broads Mental Health NHS Foundation Trust", "D"),
        Trust("w", "Taff and Tawe University Health Board", "W"),
    )
}


def _districts(spec: str) -> tuple[str, ...]:
    """'B1-3 B90' -> ('B1', 'B2', 'B3', 'B90')."""
    out: list[str] = []
    for token in spec.split():
        m = re.fullmatch(r"([A-Z]+)(\d+)-(\d+)", token)
        if m:
            area, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
            out.extend(f"{area}{n}" for n in range(lo, hi + 1))
        else:
            out.append(token)
    return tuple(out)


def _town(name: str, trust: str, phone: str, spec: str, areas: str) -> Town:
    return Town(name, trust, phone, _districts(spec), tuple(areas.split(",")))


# (town, relative weight). Weights follow population loosely, with the West Midlands (where
# the regional consortium behind this project sits) a little heavier.
TOWNS: tuple[tuple[Town, float], ...] = (
    (
        _town(
            "Birmingham",
            "wm",
            "0121",
            "B1-38 B42-45",
            "Erdington,Handsworth,Small Heath,Northfield,Yardley,Edgbaston,Sparkbrook",
        ),
        12,
    ),
    (_town("Solihull", "wm", "0121", "B90-94", "Solihull,Chelmsley Wood"), 2),
    (_town("Sutton Coldfield", "wm", "0121", "B72-76", "Sutton Coldfield"), 1),
    (_town("West Bromwich", "wm", "0121", "B70-71", "Sandwell"), 1.5),
    (
        _town("Wolverhampton", "wm", "01632", "WV1-14", "Wolverhampton North,Wolverhampton South"),
        2.5,
    ),
    (_town("Walsall", "wm", "01632", "WS1-5", "Walsall"), 2),
    (_town("Dudley", "wm", "01632", "DY1-3", "Dudley"), 2),
    (_town("Coventry", "wm", "01632", "CV1-7", "Coventry North,Coventry South"), 3.5),
    (_town("Stoke-on-Trent", "mar", "01632", "ST1-6", "Stoke,Hanley"), 2.5),
    (_town("Telford", "mar", "01632", "TF1-7", "Telford"), 1.5),
    (_town("Shrewsbury", "mar", "01632", "SY1-3", "Shrewsbury"), 1),
    (_town("Worcester", "mar", "01632", "WR1-5", "Worcester"), 1),
    (_town("Hereford", "mar", "01632", "HR1-4", "Hereford"), 0.6),
    (
        _town(
            "Manchester",
            "nw",
            "0161",
            "M1-40",
            "Central Manchester,North Manchester,Wythenshawe,Gorton",
        ),
        6,
    ),
    (_town("Salford", "nw", "0161", "M3 M5-7", "Salford"), 2),
    (_town("Stockport", "nw", "0161", "SK1-7", "Stockport"), 2),
    (_town("Oldham", "nw", "0161", "OL1-9", "Oldham"), 2),
    (_town("Bolton", "nw", "01632", "BL1-3", "Bolton"), 2),
    (_town("Wigan", "nw", "01632", "WN1-6", "Wigan"), 2),
    (
        _town(
            "Liverpool", "nw", "0151", "L1-38", "Liverpool North,Liverpool Central,Liverpool South"
        ),
        5,
    ),
    (_town("Preston", "nw", "01632", "PR1-2", "Preston"), 1.5),
    (_town("Blackpool", "nw", "01632", "FY1-4", "Blackpool"), 1.5),
    (_town("Leeds", "yh", "0113", "LS1-29", "Leeds West,Leeds East,Leeds North"), 6),
    (_town("Bradford", "yh", "01632", "BD1-15", "Bradford,Keighley"), 4),
    (_town("Huddersfield", "yh", "01632", "HD1-5", "Huddersfield"), 1.5),
    (_town("Wakefield", "yh", "01632", "WF1-2", "Wakefield"), 1.5),
    (
        _town("Sheffield", "yh", "0114", "S1-36", "Sheffield North,Sheffield South,Sheffield East"),
        5,
    ),
    (_town("Doncaster", "yh", "01632", "DN1-4", "Doncaster"), 2),
    (_town("Barnsley", "yh", "01632", "S70-75", "Barnsley"), 1.5),
    (_town("Rotherham", "yh", "01632", "S60-66", "Rotherham"), 1.5),
    (_town("York", "yh", "01632", "YO1 YO10 YO23-26 YO30-32", "York"), 1.5),
    (_town("Hull", "yh", "01632", "HU1-9", "Hull East,Hull West"), 2.5),
    (_town("Newcastle upon Tyne", "ne", "0191", "NE1-15", "Newcastle,Walker"), 3.5),
    (_town("Sunderland", "ne", "0191", "SR1-6", "Sunderland"), 2.5),
    (_town("Middlesbrough", "ne", "01632", "TS1-8", "Middlesbrough"), 2),
    (_town("Nottingham", "em", "0115", "NG1-17", "Nottingham City,Nottingham South"), 4),
    (_town("Derby", "em", "01632", "DE1-24", "Derby"), 2.5),
    (_town("Leicester", "em", "0116", "LE1-5", "Leicester City,Leicester East"), 3.5),
    (_town("Lincoln", "em", "01632", "LN1-6", "Lincoln"), 1),
    (_town("Northampton", "em", "01632", "NN1-5", "Northampton"), 2),
    (
        _town("London", "ls", "020", "SE1-28 SW2-9 SW16 CR0", "Lambeth,Southwark,Lewisham,Croydon"),
        7,
    ),
    (
        _town(
            "London",
            "ln",
            "020",
            "E1-18 N1-22 EC1V EC2A",
            "Hackney,Tower Hamlets,Newham,Islington,Haringey",
        ),
        7,
    ),
    (
        _town(
            "London",
            "lw",
            "020",
            "NW1-11 W2-14 W1D W1T WC1N WC2H SW1A SW1V SW3-5 SW10",
            "Camden,Brent,Ealing,Westminster",
        ),
        5,
    ),
    (_town("Southampton", "s", "01632", "SO14-19", "Southampton"), 2),
    (_town("Portsmouth", "s", "01632", "PO1-6", "Portsmouth"), 2),
    (_town("Brighton", "s", "01632", "BN1-3", "Brighton and Hove"), 2),
    (_town("Reading", "s", "0118", "RG1-6", "Reading"), 1.5),
    (_town("Oxford", "s", "01632", "OX1-4", "Oxford"), 1.5),
    (_town("Bristol", "sw", "0117", "BS1-16", "Bristol North,Bristol Central,Bristol South"), 4),
    (_town("Plymouth", "sw", "01632", "PL1-9", "Plymouth"), 2),
    (_town("Exeter", "sw", "01632", "EX1-4", "Exeter"), 1),
    (_town("Gloucester", "sw", "01632", "GL1-4", "Gloucester"), 1),
    (_town("Norwich", "e", "01632", "NR1-7", "Norwich"), 1.5),
    (_town("Ipswich", "e", "01632", "IP1-4", "Ipswich"), 1.5),
    (_town("Cambridge", "e", "01632", "CB1-5", "Cambridge"), 1),
    (_town("Peterborough", "e", "01632", "PE1-7", "Peterborough"), 1.5),
    (_town("Luton", "e", "01632", "LU1-4", "Luton"), 1.5),
    (_town("Milton Keynes", "e", "01632", "MK1-15", "Milton Keynes"), 2),
    (_town("Cardiff", "w", "029", "CF10-24", "Cardiff North,Cardiff South"), 3),
    (_town("Swansea", "w", "01632", "SA1-7", "Swansea"), 2),
)
TOWN_TABLE: Weighted[Town] = Weighted(TOWNS)

# Inward codes never use C I K M O V (Royal Mail).
_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


def postcode(rng: Random, town: Town) -> str:
    """A well-formed postcode in the town's postcode area, e.g. 'B15 2TT'."""
    district = town.districts[rng.randrange(len(town.districts))]
    letters = _UNIT_LETTERS
    return f"{district} {rng.randrange(10)}{letters[rng.randrange(20)]}{letters[rng.randrange(20)]}"


# Ofcom drama ranges: a thousand numbers each.
_PHONE_FORMATS = {
    "0121": "0121 496 0{:03d}",
    "0161": "0161 496 0{:03d}",
    "0113": "0113 496 0{:03d}",
    "0114": "0114 496 0{:03d}",
    "0115": "0115 496 0{:03d}",
    "0116": "0116 496 0{:03d}",
    "0117": "0117 496 0{:03d}",
    "0118": "0118 496 0{:03d}",
    "0151": "0151 496 0{:03d}",
    "0191": "0191 498 0{:03d}",
    "020": "020 7946 0{:03d}",
    "029": "029 2018 0{:03d}",
    "01632": "01632 960{:03d}",
}


def landline(rng: Random, town: Town) -> str:
    return _PHONE_FORMATS[town.phone].format(rng.randrange(1000))


def mobile(rng: Random) -> str:
    return f"07700 900{rng.randrange(1000):03d}"


def freephone(rng: Random) -> str:
    return f"0808 157 0{rng.randrange(1000):03d}"


# Common street names are drawn often (there is a Station Road in every town); the rest come
# from surnames and words with a street suffix.
COMMON_STREETS = (
    "High Street",
    "Station Road",
    "Church Street",
    "Church Lane",
    "Main Street",
    "Park Road",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Park Avenue",
    "Queens Road",
    "Kings Road",
    "New Road",
    "London Road",
    "School Lane",
    "The Crescent",
    "Mill Lane",
    "Grange Road",
    "Albert Road",
    "Springfield Road",
    "Alexandra Road",
    "Windsor Road",
    "York Road",
    "Stanley Road",
    "Chapel Street",
    "Highfield Road",
    "Broadway",
    "Church Road",
    "Mill Road",
    "North Street",
    "Queen Street",
    "King Street",
    "Bridge Street",
    "Market Street",
)
_STREET_SUFFIXES = Weighted(
    [
        ("Road", 30),
        ("Street", 25),
        ("Avenue", 10),
        ("Close", 10),
        ("Drive", 8),
        ("Lane", 8),
        ("Way", 5),
        ("Gardens", 4),
        ("Grove", 4),
        ("Crescent", 4),
        ("Place", 3),
        ("Terrace", 3),
        ("Walk", 2),
        ("Rise", 2),
        ("Mews", 1),
        ("Court", 2),
        ("Hill", 2),
        ("Vale", 1),
    ]
)
_STREET_WORDS = (
    "Oak",
    "Ash",
    "Elm",
    "Beech",
    "Cedar",
    "Willow",
    "Rowan",
    "Hawthorn",
    "Chestnut",
    "Holly",
    "Meadow",
    "Orchard",
    "Brook",
    "Mill",
    "Church",
    "Chapel",
    "Castle",
    "Abbey",
    "Forest",
    "Heath",
    "Moor",
    "Priory",
    "Rectory",
    "Vicarage",
    "Wellington",
    "Nelson",
    "Cromwell",
    "Shakespeare",
    "Tennyson",
    "Milton",
    "Coronation",
    "Jubilee",
    "Balmoral",
    "Sandringham",
    "St John's",
    "St Mary's",
    "St Peter's",
    "Lady",
    "Canal",
    "Wharf",
    "Foundry",
    "Tannery",
)
BLOCK_SUFFIXES = ("House", "Court", "Heights", "Tower", "Lodge", "Point", "Mansions")


def street_pool(rng: Random, surnames: Weighted[str], size: int = 3000) -> tuple[str, ...]:
    """Streets for this cohort: built once from the seed, then drawn by index."""
    out = list(COMMON_STREETS) * 12  # common names stay common in the draw
    while len(out) < size:
        stem = surnames.pick(rng) if rng.random() < 0.55 else rng.choice(_STREET_WORDS)
        out.append(f"{stem} {_STREET_SUFFIXES.pick(rng)}")
    return tuple(out)


HOSPITAL_WORDS = (
    "Oak",
    "Ash",
    "Cedar",
    "Willow",
    "Rowan",
    "Hawthorn",
    "Beech",
    "Larch",
    "Hazel",
    "Linden",
    "Alder",
    "Maple",
    "Birch",
    "Laurel",
    "Heather",
    "Thistle",
)
HOSPITAL_SUFFIXES = ("House", "Unit", "Centre", "Lodge", "Hospital")
WARD_NAMES = (
    "Ward 1",
    "Ward 2",
    "Ward 3",
    "Ward 4",
    "Cedar Ward",
    "Rowan Ward",
    "Bluebell Ward",
    "Kingfisher Ward",
    "Poppy Ward",
    "Heron Ward",
    "Swift Ward",
    "Lavender Ward",
    "Meadow Ward",
    "Orchid Ward",
)
GP_NAME_FORMATS = (
    "{} Surgery",
    "{} Medical Centre",
    "{} Health Centre",
    "The {} Practice",
    "{} Family Practice",
    "{} Medical Practice",
)
