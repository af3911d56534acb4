"""Crisis-plan wording: short, respectful, British clinical phrases an officer can read fast.

Each section draws a few phrases from its pool and fills in the person's own details (the name
they like to be called, their contacts, the local ward). Phrases avoid pronouns so they fit
anyone. Helplines named here (Samaritans 116 123, Shout 85258) are real public services; every
other number is from Ofcom's drama ranges.
"""

from __future__ import annotations

from random import Random

EARLY_WARNING_SIGNS = (
    "Stops sleeping, up and pacing through the night.",
    "Stops answering the phone to family and the care coordinator.",
    "Stops taking medication, often saying it is no longer needed.",
    "Talks very fast, spends money that is not there and starts lots of projects.",
    "Becomes suspicious of neighbours and believes the flat is being watched.",
    "Hears voices more often, especially at night; may be seen talking back to them.",
    "Stops eating and loses weight; the flat becomes neglected.",
    "Drinking increases, mostly alone.",
    "Talks about being a burden to others.",
    "Gives away belongings or sorts out affairs.",
    "Misses depot or clinic appointments.",
    "Becomes irritable and quick to argue, which is unusual for {pref}.",
    "Writes long letters or posts online about being followed.",
    "Stays in bed most of the day and stops washing.",
    "Self-harm by cutting increases; may wear long sleeves in warm weather.",
    "Says things feel unreal or that {pref} is 'not really here'.",
    "Searches online for methods; family have found this before.",
    "Walks for hours without a clear destination, sometimes at night.",
    "Believes messages are being sent through the television or radio.",
    "Withdraws from friends and stops going to the gym.",
)
TRIGGERS = (
    "Anniversary of a bereavement in {month}.",
    "Money worries, especially benefit reviews or sanctions.",
    "Arguments with a partner or family members.",
    "Cannabis use.",
    "Stopping or missing medication.",
    "Loud, crowded places such as the city centre on a Saturday night.",
    "Contact from an ex-partner.",
    "Housing problems or a threat of eviction.",
    "Reminders of past abuse, including being restrained or held down.",
    "Court dates and contact with the criminal justice system.",
    "Changes of care coordinator or staff.",
    "Loneliness over Christmas and bank holidays.",
    "Being discharged from hospital without a plan.",
    "Alcohol, particularly spirits.",
    "Problems with contact arrangements for the children.",
    "Being shouted at or feeling disbelieved.",
    "Night-time and poor sleep.",
    "Pain flare-ups from a long-standing back injury.",
)
WHAT_HELPS = (
    "Speak calmly and slowly, one person talking at a time.",
    "Use the name {pref}.",
    "Give space; do not crowd or stand over {pref}.",
    "Offer a cup of tea and time to talk before making any decisions.",
    "Explain who you are and why you are there, more than once if needed.",
    "Listening to music through headphones helps {pref} settle.",
    "Phoning {contact_rel}, who can usually calm things down.",
    "Talking about the children; {pref} is proud of them.",
    "Going for a walk outside rather than staying in a small room.",
    "Being told clearly what will happen next.",
    "Distraction: talking about football or music.",
    "A quiet space with the lights down.",
    "Taking PRN medication as prescribed (see medication list).",
    "Writing things down; {pref} finds it easier than talking when distressed.",
    "Breathing exercises learned with the psychology team.",
    "Reassurance that {pref} is not in trouble.",
    "Being offered a choice, even a small one.",
    "Sitting side by side rather than face to face.",
)
WHAT_DOES_NOT_HELP = (
    "Being touched without warning.",
    "Raised voices or several people talking at once.",
    "Being told to calm down.",
    "Uniforms can increase distress: explain who you are and keep a calm distance.",
    "Being asked the same questions repeatedly.",
    "Being left alone in a small room.",
    "Being rushed into decisions.",
    "Jokes or sarcasm; these can be taken literally.",
    "Being restrained: this has caused lasting distress in the past.",
    "Talking about {pref} to others as if {pref} is not there.",
    "Bright lights and noisy waiting areas.",
    "Being told the voices are not real.",
    "Arguing about beliefs; acknowledge the feeling instead.",
    "Mentioning the ex-partner.",
)
PREFERRED_PLACE = (
    "Home treatment with the crisis team if at all possible.",
    "If admission is needed, {ward} at {hospital}; {pref} knows the staff there.",
    "If a place of safety is needed, the s136 suite at {hospital}, not a police station.",
    "Prefers to be assessed at home with {contact_rel} present.",
    "Would accept an informal admission to {ward}, {hospital}.",
    "A crisis house or safe haven in {town} before going to A&E.",
    "Prefers a female-only ward if admitted.",
    "Would like to go to {contact_rel}'s house for a few nights rather than hospital.",
)
PLACES_TO_AVOID = (
    "{ed} emergency department if possible: long waits have made things worse before.",
    "Police custody: past experience was very frightening.",
    "Not the s136 suite at {hospital}: a previous stay there was very distressing.",
    "Avoid the area around the bus station, where {pref} has been assaulted.",
    "Not {pref}'s mother's address: relationship has broken down.",
    "Avoid wards where {pref} has been secluded before, if there is a choice.",
)
PRACTICAL_NEEDS = (
    "Dog ({pet}) at home: {contact_rel} has a key and will look after it.",
    "Cat at home: neighbour at number {house} will feed it.",
    "Two children at primary school: {contact_rel} to collect; children's social care only "
    "if no family can help.",
    "Cares for an elderly parent nearby: adult social care duty team to be told.",
    "Needs glasses and hearing aids brought in.",
    "Type 1 diabetes: insulin pens in the fridge must come too.",
    "{contact_rel} can deal with post, rent and bills.",
    "Needs halal food.",
    "Vegetarian.",
    "Uses a walking stick; a ground-floor room if possible.",
    "Has a hospital appointment on the 3rd of each month that will need rearranging.",
    "Works part-time: {contact_rel} will let the employer know.",
    "Phone charger and a change of clothes, please.",
)
ADVANCE_STATEMENT = (
    '"If I become unwell I would like {contact_my} to be told and to visit."',
    '"Please offer me medication by mouth before any injection."',
    '"Please call me {pref}."',
    '"I would like female staff for any physical examination."',
    '"Please contact the chaplaincy or imam if I am admitted."',
    '"Olanzapine has helped me before; haloperidol gave me severe stiffness."',
    '"I would like my care coordinator to be told if I am admitted."',
    '"I do not want my employer contacted."',
    '"If I need to be held, please let me keep my headphones."',
    '"I would like to be involved in decisions even when I am very unwell."',
)
ADRT = (
    "Valid advance decision (signed and witnessed {adrt_date}): refuses electroconvulsive "
    "therapy (ECT). Copy held by the GP and in the record.",
    "Advance decision (signed {adrt_date}) refusing depot antipsychotic medication. Treatment "
    "for mental disorder may still be given if detained under the Mental Health Act.",
)
FAMILY_CARER = (
    "{contact_rel} is the main carer and would like to be involved in decisions.",
    "Consents to information being shared with {contact_rel}.",
    "Does not want family contacted without being asked first.",
    "Ex-partner must not be told where {pref} is (safeguarding).",
    "Carer's assessment completed; {contact_rel} has the carers' support line number.",
    "Family are supportive but live some distance away.",
    "{contact_rel} finds crises very stressful; please keep contact brief and practical.",
)
PROTECTIVE_FACTORS = (
    "Close relationship with the children.",
    "Faith and the church community.",
    "Faith and the mosque; attends Friday prayers.",
    "The dog and daily walks.",
    "Volunteers at a food bank two days a week.",
    "Attends the recovery college.",
    "Good relationship with the care coordinator; attends depot clinic.",
    "Football: goes to home games with {contact_rel}.",
    "Plans for the future, including a college course.",
    "Allotment and gardening.",
    "Regular contact with a peer support worker.",
    "Has stayed well for long periods on current medication.",
)

POOLS: dict[str, tuple[str, ...]] = {
    "early-warning-signs": EARLY_WARNING_SIGNS,
    "triggers": TRIGGERS,
    "what-helps": WHAT_HELPS,
    "what-does-not-help": WHAT_DOES_NOT_HELP,
    "preferred-place": PREFERRED_PLACE,
    "places-to-avoid": PLACES_TO_AVOID,
    "practical-needs": PRACTICAL_NEEDS,
    "advance-statement": ADVANCE_STATEMENT,
    "adrt": ADRT,
    "family-carer-involvement": FAMILY_CARER,
    "protective-factors": PROTECTIVE_FACTORS,
}
# How often a plan has each section; who-to-contact is always there (built separately).
SECTION_CHANCE: dict[str, float] = {
    "early-warning-signs": 0.95,
    "triggers": 0.85,
    "what-helps": 0.92,
    "what-does-not-help": 0.7,
    "who-to-contact": 1.0,
    "preferred-place": 0.7,
    "places-to-avoid": 0.3,
    "practical-needs": 0.4,
    "advance-statement": 0.25,
    "adrt": 0.05,
    "family-carer-involvement": 0.55,
    "protective-factors": 0.5,
}
# (min, max) phrases per section.
SECTION_LENGTH: dict[str, tuple[int, int]] = {
    "early-warning-signs": (2, 4),
    "triggers": (1, 3),
    "what-helps": (2, 4),
    "what-does-not-help": (1, 3),
    "preferred-place": (1, 2),
    "places-to-avoid": (1, 1),
    "practical-needs": (1, 2),
    "advance-statement": (1, 2),
    "adrt": (1, 1),
    "family-carer-involvement": (1, 2),
    "protective-factors": (1, 3),
}
PETS = ("Max", "Bella", "Bailey", "Luna", "Buster", "Milo", "Daisy", "Rocky", "Poppy", "Tyson")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
PLAN_TITLES = (
    "Crisis and contingency plan",
    "Crisis plan",
    "My crisis plan",
    "Safety and crisis plan",
    "Crisis and relapse prevention plan",
)


# The same pools without phrases naming a contact, for people with no family or friend listed.
_POOLS_NO_CONTACT = {
    code: tuple(p for p in pool if "{contact_" not in p) for code, pool in POOLS.items()
}


def section_text(rng: Random, code: str, fill: dict[str, str]) -> str:
    """A few phrases for one section, in pool order so the text reads naturally."""
    pool = POOLS[code] if "contact_rel" in fill else _POOLS_NO_CONTACT[code]
    lo, hi = SECTION_LENGTH[code]
    k = min(rng.randint(lo, hi), len(pool))
    picks = sorted(rng.sample(range(len(pool)), k))
    return " ".join(_sentence(pool[i].format_map(fill)) for i in picks)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
