"""Name pools for a British urban mental-health cohort, and the known-as names people use.

The long British tail comes from Faker's en_GB tables (ONS-derived surnames with their
frequencies, so Smith, Jones, Williams... dominate as they do in a real register). Faker's RNG
is never called: reading its tables once and drawing with our own seeded `Random` is what makes
100k patients take seconds, not minutes. Other communities, Irish/Welsh/Scottish spellings,
apostrophes, hyphens and accents are listed here because they are exactly what a forgiving
search has to cope with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from random import Random

from faker.providers.person.en_GB import Provider as _FakerPerson

from app.synthetic._common import Weighted


@dataclass(frozen=True, slots=True)
class Community:
    """Names that travel together, with the ethnic categories (England codes) people in it
    most often state. The link is loose on purpose: category is self-reported."""

    key: str
    male: Weighted[str]
    female: Weighted[str]
    surnames: Weighted[str]
    ethnicity: Weighted[str]
    language: str | None = None  # BCP 47 code when an interpreter is sometimes needed


def _ranked(names: tuple[str, ...] | list[str], flat: float = 8.0) -> Weighted[str]:
    """Earlier names more common (Faker's ONS lists are in frequency order)."""
    return Weighted((n, 1.0 / (rank + flat)) for rank, n in enumerate(names))


def _even(names: str) -> Weighted[str]:
    return Weighted((n, 1.0) for n in names.split())


def _even_list(names: list[str]) -> Weighted[str]:
    return Weighted((n, 1.0) for n in names)


# Accented spellings of names in Faker's lists, used for a share of the people who carry them.
ACCENTED = {
    "Zoe": "Zoë",
    "Chloe": "Chloé",
    "Sian": "Siân",
    "Sean": "Seán",
    "Renee": "Renée",
    "Noel": "Noël",
    "Rene": "René",
    "Jose": "José",
    "Ines": "Inês",
    "Joao": "João",
}

_BRITISH_FEMALE_EXTRA = [
    "Zoe",
    "Chloe",
    "Renee",
    "Leanne",
    "Kayleigh",
    "Chelsea",
    "Jade",
    "Demi",
    "Shannon",
    "Toni",
    "Kerry",
    "Stacey",
    "Maxine",
    "Bernadette",
    "Ellie",
]
_BRITISH_MALE_EXTRA = [
    "Noel",
    "Wayne",
    "Dean",
    "Shane",
    "Kieran",
    "Callum",
    "Reece",
    "Tyler",
    "Kyle",
    "Rene",
    "Sean",
    "Terence",
    "Derek",
    "Trevor",
    "Barry",
]

_faker_surnames = dict(_FakerPerson.last_names)
BRITISH_SURNAMES = Weighted(_faker_surnames.items())

COMMUNITIES: tuple[tuple[Community, float], ...] = (
    (
        Community(
            "british",
            _ranked(list(_FakerPerson.first_names_male) + _BRITISH_MALE_EXTRA),
            _ranked(list(_FakerPerson.first_names_female) + _BRITISH_FEMALE_EXTRA),
            BRITISH_SURNAMES,
            Weighted([("A", 86), ("D", 3), ("F", 1), ("G", 2), ("C", 2), ("Z", 4), ("99", 2)]),
        ),
        60.0,
    ),
    (
        Community(
            "welsh",
            _even("Rhys Dafydd Iestyn Ioan Aled Gethin Owain Huw Emyr Gareth Dylan Osian Llŷr"),
            _even("Siân Ffion Carys Gwen Llinos Cerys Nia Bethan Eleri Angharad Mali Seren Lowri"),
            _even(
                "Jones Williams Davies Evans Thomas Roberts Hughes Lewis Morgan Griffiths Price "
                "Pritchard Llewellyn Rees Jenkins Powell Howells Parry Bowen"
            ),
            Weighted([("A", 95), ("Z", 5)]),
        ),
        3.0,
    ),
    (
        Community(
            "irish",
            _even(
                "Seán Ciarán Pádraig Eoin Declan Niall Cathal Colm Dónal Liam Conor Fergal Cormac"
            ),
            _even(
                "Siobhán Niamh Aoife Róisín Orla Caoimhe Bríd Sinéad Clodagh Áine Deirdre Grainne"
            ),
            _even(
                "Murphy Kelly O'Brien O'Neill Byrne Doyle Gallagher Quinn McCarthy Ryan Walsh "
                "O'Sullivan Fitzgerald Kavanagh O'Connor O'Reilly Brennan Donnelly Nolan"
            ),
            Weighted([("B", 60), ("A", 30), ("C", 5), ("Z", 5)]),
        ),
        4.0,
    ),
    (
        Community(
            "scottish",
            _even("Iain Hamish Callum Fraser Euan Angus Alasdair Ruaridh Calum Lachlan Douglas"),
            _even("Mhairi Eilidh Morag Ailsa Isla Kirsty Catriona Fiona Shona Iona Morven"),
            _even(
                "McDonald MacLeod McKenzie MacDonald McLaughlin MacKay McGregor Campbell Stewart "
                "Robertson McIntyre MacKinnon McAllister Fraser Cameron MacPherson"
            ),
            Weighted([("A", 95), ("Z", 5)]),
        ),
        3.0,
    ),
    (
        Community(
            "polish",
            _even(
                "Piotr Krzysztof Tomasz Paweł Łukasz Michał Marcin Grzegorz Jakub Mateusz Wojciech"
            ),
            _even(
                "Agnieszka Katarzyna Małgorzata Joanna Magdalena Zofia Aleksandra Ewa Monika "
                "Dorota Beata Żaneta"
            ),
            _even(
                "Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński "
                "Szymański Woźniak Dąbrowski Kozłowski Mazur Krawczyk Jankowski"
            ),
            Weighted([("C", 92), ("Z", 8)]),
            "pl",
        ),
        4.0,
    ),
    (
        Community(
            "indian",
            _even(
                "Rajesh Sanjay Amit Deepak Ravi Vikram Rajinder Sukhwinder Jaswinder Harjit "
                "Gurpreet Manpreet Arjun Rohit Nikhil Jatinder"
            ),
            _even(
                "Priya Anjali Sunita Neha Pooja Harpreet Gurpreet Manpreet Kamaljit Priyanka "
                "Rupinder Parminder Sangeeta Meera Divya Simran"
            ),
            Weighted(
                [
                    ("Patel", 8),
                    ("Singh", 6),
                    ("Kaur", 4),
                    ("Sharma", 2),
                    ("Gupta", 1),
                    ("Shah", 2),
                    ("Mistry", 1),
                    ("Chauhan", 1),
                    ("Gill", 2),
                    ("Sandhu", 1),
                    ("Bains", 1),
                    ("Sidhu", 1),
                    ("Kumar", 2),
                    ("Parmar", 1),
                    ("Mehta", 1),
                ]
            ),
            Weighted([("H", 88), ("L", 4), ("F", 2), ("Z", 6)]),
            "pa",
        ),
        5.0,
    ),
    (
        Community(
            "pakistani",
            _even(
                "Mohammed Muhammad Imran Asif Tariq Bilal Usman Zain Adnan Kamran Faisal Hamza "
                "Shahid Naveed Zubair"
            ),
            _even(
                "Ayesha Fatima Saima Nadia Shazia Sana Aisha Farah Rubina Nasreen Hina Amna "
                "Zainab Sadia"
            ),
            Weighted(
                [
                    ("Khan", 8),
                    ("Hussain", 6),
                    ("Ahmed", 5),
                    ("Ali", 5),
                    ("Akhtar", 3),
                    ("Iqbal", 3),
                    ("Mahmood", 2),
                    ("Rashid", 2),
                    ("Butt", 2),
                    ("Malik", 2),
                    ("Shah", 2),
                    ("Riaz", 1),
                    ("Bibi", 1),
                    ("Aslam", 1),
                    ("Mirza", 1),
                ]
            ),
            Weighted([("J", 88), ("L", 4), ("Z", 8)]),
            "ur",
        ),
        5.0,
    ),
    (
        Community(
            "bangladeshi",
            _even("Abdul Mizanur Shahid Jamal Rezaul Anwar Shafiq Habib Kamal Mohammed Rahim"),
            _even("Nasima Rumana Shamima Jahanara Salma Rokeya Hasina Shirin Taslima Nazma"),
            Weighted(
                [
                    ("Begum", 6),
                    ("Uddin", 5),
                    ("Miah", 5),
                    ("Rahman", 4),
                    ("Islam", 4),
                    ("Chowdhury", 3),
                    ("Hoque", 2),
                    ("Ahmed", 3),
                    ("Ali", 2),
                    ("Khatun", 2),
                ]
            ),
            Weighted([("K", 90), ("Z", 10)]),
            "bn",
        ),
        2.0,
    ),
    (
        Community(
            "goan",
            _even("Anthony Francis Joseph Agnelo Rui Melvyn Conrad Xavier"),
            _even("Maria Angela Lavinia Sharon Fatima Priscilla Sonia Natasha"),
            _even("D'Souza D'Costa Fernandes Pereira Rodrigues D'Mello Pinto Gomes"),
            Weighted([("L", 70), ("H", 20), ("Z", 10)]),
        ),
        1.0,
    ),
    (
        Community(
            "caribbean",
            _even(
                "Marcus Tyrone Delroy Winston Jermaine Leroy Kemar Devon Andre Clive Errol Carlton "
                "Junior Dwayne"
            ),
            _even(
                "Shanice Marcia Beverley Paulette Jade Marlene Yvonne Charmaine Simone Sonia "
                "Natalie Tanisha Claudette"
            ),
            _even(
                "Campbell Brown Williams Clarke Francis Grant Reid Thomas Bailey Henry Gordon "
                "Morgan Powell Richards Samuels Edwards Johnson Lewis"
            ),
            Weighted([("M", 70), ("D", 15), ("P", 8), ("Z", 7)]),
        ),
        4.0,
    ),
    (
        Community(
            "west_african",
            _even(
                "Oluwaseun Chidi Chinedu Adebayo Olumide Tunde Kwame Kofi Yaw Emeka Oluwatobi "
                "Babatunde Obinna"
            ),
            _even(
                "Funmilayo Ngozi Chiamaka Folake Adaeze Temitope Ama Akosua Abena Yetunde "
                "Olamide Chioma"
            ),
            _even(
                "Okafor Adeyemi Okonkwo Adebayo Eze Nwosu Balogun Okoro Mensah Asante Boateng "
                "Owusu Appiah Oyelaran Adewale Obi"
            ),
            Weighted([("N", 85), ("E", 5), ("P", 4), ("Z", 6)]),
        ),
        3.0,
    ),
    (
        Community(
            "somali",
            _even("Abdi Abdirahman Mohamed Hassan Yusuf Ahmed Omar Abdullahi Liban"),
            _even("Hodan Faadumo Amina Hawa Sahra Ifrah Ayan Nimco Deeqa"),
            _even("Hassan Warsame Farah Hirsi Mohamed Abdi Ali Osman Jama Egal"),
            Weighted([("N", 85), ("S", 8), ("Z", 7)]),
            "so",
        ),
        1.5,
    ),
    (
        Community(
            "chinese",
            _even("Wei Jun Ming Hao Kevin Michael Ka-Wai Chi-Keung"),
            _even("Mei Ling Xiu Yan Jenny Grace Wing Siu-Mei"),
            _even("Chen Wong Li Zhang Wang Lam Cheung Liu Ng Chan Ho Yip"),
            Weighted([("R", 85), ("L", 5), ("Z", 10)]),
            "yue",
        ),
        1.0,
    ),
    (
        Community(
            "middle_eastern",
            _even("Yusuf Omar Mehmet Emre Karim Hassan Dara Rebin Ahmad Reza Ali"),
            _even("Leyla Zeynep Ayşe Shirin Hana Nour Rojin Maryam Dilan Elif"),
            _even("Yılmaz Demir Kaya Hassan Ibrahim Rahimi Ahmadi Karimi Abdullah Şahin Mustafa"),
            Weighted([("S", 80), ("C", 10), ("Z", 10)]),
            "tr",
        ),
        1.5,
    ),
    (
        Community(
            "iberian",
            _even("José João Miguel Pedro Luís Rui Carlos Tiago"),
            _even("María Inês Ana Beatriz Lúcia Sofía Raquel Mónica"),
            _even(
                "Silva Santos Ferreira García Rodríguez Pereira Costa Martínez Gonçalves Fernández"
            ),
            Weighted([("C", 85), ("Z", 15)]),
            "pt",
        ),
        1.0,
    ),
)

COMMUNITY_TABLE: Weighted[Community] = Weighted(COMMUNITIES)


# Names only women carry (Sikh Kaur, Bangladeshi Begum/Khatun, Pakistani Bibi), and the
# commonest men's name in the same community.
_WOMEN_ONLY = {"Kaur": "Singh", "Begum": "Uddin", "Khatun": "Miah", "Bibi": "Khan"}


def gendered_surname(surname: str, female: bool) -> str:
    """Polish -ski/-cki surnames take -ska/-cka for women; Kaur, Begum... are women's names."""
    if not female:
        return _WOMEN_ONLY.get(surname, surname)
    if surname.endswith(("ski", "cki", "dzki")):
        return surname[:-1] + "a"
    return surname


def hyphenated(rng: Random) -> str:
    """A double-barrelled surname (Smith-Jones) from two common British names."""
    first = BRITISH_SURNAMES.pick(rng)
    second = BRITISH_SURNAMES.pick(rng)
    while second == first:
        second = BRITISH_SURNAMES.pick(rng)
    return f"{first}-{second}"


# Known-as names the nicknames package does not know, or that British records use more often
# than its first-letter variants (William -> Bill, Margaret -> Maggie, Jonathan -> Jonno).
_KNOWN_AS: dict[str, tuple[str, ...]] = {
    "William": ("Bill", "Billy", "Will", "Liam"),
    "Robert": ("Bob", "Bobby", "Rob", "Robbie"),
    "Margaret": ("Maggie", "Peggy", "Meg", "Mags"),
    "Elizabeth": ("Liz", "Beth", "Lizzie"),
    "Jonathan": ("Jonno", "Jon", "Jonny"),
    "Gareth": ("Gaz",),
    "Gary": ("Gaz",),
    "Barry": ("Baz",),
    "Darren": ("Daz",),
    "Sharon": ("Shaz",),
    "Sarah": ("Saz",),
    "Karen": ("Kaz",),
    "Kevin": ("Kev",),
    "Terence": ("Tel", "Terry"),
    "Derek": ("Del",),
    "Christopher": ("Chris", "Kit"),
    "Richard": ("Rich", "Dick", "Ricky"),
    "Edward": ("Ted", "Eddie", "Ed"),
    "Anthony": ("Tony", "Ant"),
    "Michael": ("Mick", "Mike"),
    "Rebecca": ("Becky", "Bex"),
    "Deborah": ("Debbie", "Debs"),
    "Patricia": ("Trish", "Pat"),
    "Jacqueline": ("Jackie", "Jacqui"),
    "Samantha": ("Sam", "Sammy"),
    "Victoria": ("Vicky",),
    "Catherine": ("Cath", "Kate"),
    "Katherine": ("Kate", "Kath"),
    "Alexander": ("Alex", "Sandy"),
    "Mohammed": ("Mo",),
    "Muhammad": ("Mo",),
    "Mohamed": ("Mo",),
    "Oluwaseun": ("Seun",),
    "Olumide": ("Mide",),
    "Adebayo": ("Bayo", "Ade"),
    "Temitope": ("Temi", "Tope"),
    "Oluwatobi": ("Tobi",),
    "Babatunde": ("Tunde",),
    "Funmilayo": ("Funmi",),
    "Chiamaka": ("Amaka",),
    "Chinedu": ("Chi",),
    "Katarzyna": ("Kasia",),
    "Małgorzata": ("Gosia",),
    "Agnieszka": ("Aga",),
    "Aleksandra": ("Ola",),
    "Krzysztof": ("Krzyś", "Chris"),
    "Łukasz": ("Luke",),
    "Tomasz": ("Tom", "Tomek"),
    "Rajinder": ("Raj",),
    "Rajesh": ("Raj",),
    "Sukhwinder": ("Sukhi",),
    "Jaswinder": ("Jas",),
    "Parminder": ("Pam",),
    "Priyanka": ("Priya",),
    "Siobhán": ("Shiv",),
    "Pádraig": ("Paddy",),
    "Alasdair": ("Ally",),
    "Ruaridh": ("Rory",),
    "Abdirahman": ("Abdi",),
    "James": ("Jim", "Jimmy", "Jamie"),
    "Stephen": ("Steve", "Stevie"),
    "Steven": ("Steve",),
    "Thomas": ("Tom", "Tommy"),
    "David": ("Dave", "Davy"),
    "Daniel": ("Dan", "Danny"),
    "Matthew": ("Matt",),
    "Andrew": ("Andy", "Drew"),
    "Nicholas": ("Nick", "Nicky"),
    "Benjamin": ("Ben", "Benny"),
    "Joseph": ("Joe", "Joey"),
    "Samuel": ("Sam", "Sammy"),
    "Susan": ("Sue", "Suzy"),
    "Julie": ("Jules",),
    "Jennifer": ("Jen", "Jenny"),
    "Nicola": ("Nicky", "Nic"),
    "Joanne": ("Jo",),
    "Louise": ("Lou",),
    "Natalie": ("Nat",),
    "Kimberley": ("Kim",),
    "Philip": ("Phil",),
    "Timothy": ("Tim",),
    "Peter": ("Pete",),
    "Raymond": ("Ray",),
    "Kenneth": ("Ken", "Kenny"),
    "Leonard": ("Len", "Lenny"),
    "Ronald": ("Ron", "Ronnie"),
    "Donald": ("Don", "Donny"),
    "Gerald": ("Gerry",),
    "Frederick": ("Fred", "Freddie"),
    "Abigail": ("Abbie", "Abi"),
    "Jessica": ("Jess",),
    "Charlotte": ("Charlie", "Lottie"),
    "Alexandra": ("Alex", "Lexi"),
    "Gemma": ("Gem",),
    "Danielle": ("Dani",),
    "Christine": ("Chris", "Chrissie"),
    "Amanda": ("Mandy",),
    "Patrick": ("Pat", "Paddy"),
    "Lawrence": ("Laurie", "Larry"),
    "Anne": ("Annie",),
}

# Street and family nicknames recorded as `nickname` aliases; some come from the surname.
STREET_ALIASES = (
    "Spider",
    "Tiny",
    "Ginge",
    "Smudge",
    "Dodger",
    "Stretch",
    "Bubbles",
    "Sparky",
    "Lofty",
    "Skip",
    "Sunny",
    "Rocky",
    "Buster",
    "Budgie",
    "Mouse",
    "Scooter",
    "Moz",
    "Tigger",
    "Jonno",
    "Deano",
    "Tommo",
    "Kaz",
    "Bex",
    "Birdie",
    "Pixie",
)
SURNAME_ALIASES = {
    "Smith": "Smithy",
    "Jones": "Jonesy",
    "Robinson": "Robbo",
    "Roberts": "Robbo",
    "Thompson": "Tommo",
    "Thomas": "Tommo",
    "Wilson": "Willo",
    "Davies": "Davo",
    "White": "Chalky",
    "Miller": "Dusty",
    "Murphy": "Spud",
    "Wood": "Woody",
    "McDonald": "Macca",
    "MacDonald": "Macca",
    "McCarthy": "Macca",
}


@cache
def _package_nicknames() -> dict[str, set[str]]:
    from nicknames import NickNamer

    return NickNamer().nickname_lookup


@cache
def known_as_options(given: str) -> tuple[str, ...]:
    """Known-as names for a given name, most likely first; () when people rarely shorten it.

    Curated British forms first, then the `nicknames` package's, kept only where they are
    shorter and visibly come from the name (Will, Liz): its list also holds variant spellings
    (Julie -> Julia) and archaic forms (Robert -> Hobkin) nobody writes as a known-as name.
    Sorted so the draw is deterministic.
    """
    curated = _KNOWN_AS.get(given, ())
    lower = given.lower()
    pkg = sorted(
        n.capitalize()
        for n in _package_nicknames().get(lower, ())
        if 3 <= len(n) < len(lower)
        and n.isalpha()
        and n[:3] in lower
        and any(v in n for v in "aeiouy")
    )
    return tuple(dict.fromkeys((*curated, *pkg)))
