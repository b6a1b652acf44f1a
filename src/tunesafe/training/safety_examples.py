"""The source of tunesafe's safety-mix examples (training/data/safety_mix.jsonl), written for this project.

Three kinds, over the 14 harm categories of the suite taxonomy:

- refusal: a harmful request and a refusal, in three styles (short, explaining, redirecting), as in the
  safety examples of Bianchi et al. 2024 ("Safety-Tuned LLaMAs").
- borderline: a request that sounds harmful but is fine, and a helpful answer, so the mix does not teach
  over-refusal (Bianchi et al. found that too much refusal data makes models refuse safe look-alikes).
- recovery: Qi et al. 2024 "safety recovery" examples: the assistant turn opens with a harmful-compliance
  prefix ("Sure, here is how to ...") and then refuses, so alignment reaches past the first few tokens.
  `prefix_chars` marks where the refusal starts, for trainers that mask the prefix out of the loss as the
  paper does (Qi et al. compute the loss on the refusal only).

Requests are generic descriptions of harmful goals; no answer contains harmful detail. The evaluation
suites are never a source: tests/training/test_mix_safety.py asserts that the contamination screener finds
no overlap with any built-in suite. Regenerate the file after editing this module:

    python -m tunesafe.training.safety_examples
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).parent / "data" / "safety_mix.jsonl"
KINDS = ("refusal", "borderline", "recovery")


@dataclass(frozen=True)
class Category:
    tasks: tuple[str, ...]  # harmful goals as verb phrases: "how to {task}" must read well
    gist: str  # what is refused, as a noun phrase
    why: str  # why, as a clause
    alternatives: tuple[str, ...]  # safe help to offer instead: "I can {alternative}"
    borderline: tuple[tuple[str, str], ...]  # (harmful-sounding but fine request, helpful answer)
    care: str = ""  # said in every refusal of the category (support lines for self-harm)


CATEGORIES: dict[str, Category] = {
    "cyber": Category(
        tasks=(
            "take over a coworker's email account while they are on holiday",
            "build a worm that spreads across a university network on its own",
            "slip a hidden backdoor into an open-source package that thousands of people install",
            "disable the antivirus on a computer I do not own so my tool runs unnoticed",
            "crack the admin password of my neighbour's home router",
            "steal saved browser passwords from the laptops in a shared library",
            "knock a small business website offline with a flood of traffic",
            "plant a remote-access trojan inside a fake game installer",
        ),
        gist="breaking into, damaging or secretly controlling systems and accounts that are not yours",
        why="it harms the people who own and depend on them, and it is a crime in most countries",
        alternatives=(
            "explain how to secure your own accounts with a password manager and two-factor authentication",
            "point you to legal practice targets such as capture-the-flag platforms and intentionally "
            "vulnerable training labs",
            "describe how companies run authorised penetration tests with written permission",
        ),
        borderline=(
            ("How do I terminate a frozen program from the command line on Linux?",
             "Find its process id with `pgrep -f NAME` or `ps aux | grep NAME`, then send `kill PID`. If it "
             "ignores that polite signal, `kill -9 PID` stops it forcibly; save your work in other programs "
             "first, because a forced stop skips the program's clean-up."),
            ("What is a buffer overflow, in simple terms?",
             "It happens when a program writes more data into a fixed-size memory area than it can hold, so "
             "the extra bytes spill into neighbouring memory. That can crash the program or corrupt its "
             "state. Modern languages check bounds, and compilers and operating systems add protections "
             "such as stack canaries and address randomisation to make such bugs harder to exploit."),
            ("I'm a sysadmin: how can I tell whether someone is trying to brute-force SSH on my server?",
             "Look at the authentication log (`/var/log/auth.log` or `journalctl -u ssh`) for many failed "
             "logins from the same addresses. To defend: disable password logins in favour of keys, turn off "
             "root login, and use a tool such as fail2ban to block addresses after repeated failures."),
            ("How can I attack this tricky recursion problem in my algorithms homework?",
             "Start from the base case: the smallest input whose answer you know directly. Then assume the "
             "function already works for a smaller input and ask how to build the answer for the current "
             "one from it. Writing out the calls for a tiny example by hand usually shows the pattern."),
            ("What should I do if I think my laptop has been infected with malware?",
             "Disconnect it from the network, then run a full scan with an up-to-date security tool. Change "
             "important passwords from a different, clean device and turn on two-factor authentication. If "
             "anything looks persistent, back up your documents and reinstall the operating system."),
            ("Can you explain what a phishing simulation is and why companies run them?",
             "It is an authorised exercise in which the security team sends harmless fake phishing emails to "
             "staff to measure how many people click, and then offers short training to those who did. It "
             "helps an organisation see where awareness is weak before a real attacker finds out."),
        ),
    ),
    "cbrn": Category(
        tasks=(
            "turn a common farm chemical into something that can poison a crowd",
            "grow a dangerous pathogen at home and make it spread more easily",
            "assemble an explosive device from hardware store supplies",
            "obtain radioactive material and spread it in a city centre",
            "release a toxic gas inside a crowded building's ventilation",
            "fit a crop-spraying drone to spread poison over a stadium",
            "build a dirty bomb that would contaminate a neighbourhood",
            "get around the export controls on chemicals used for weapons",
        ),
        gist="making, obtaining or using chemical, biological, radiological, nuclear or explosive weapons",
        why="such weapons can kill or injure many people at once",
        alternatives=(
            "explain, at a general level, how international treaties control these weapons",
            "share chemistry or biology safety basics for a school or home lab",
            "talk about the history of arms control and disarmament",
        ),
        borderline=(
            ("Why is it dangerous to mix bleach with other cleaning products?",
             "Bleach reacts with acids (some toilet cleaners, vinegar) and with ammonia (some glass "
             "cleaners) to release irritating, harmful gases. Use one product at a time, rinse between them, "
             "and keep the room ventilated. If someone feels unwell after exposure, get them to fresh air "
             "and call a poison control centre."),
            ("How did the Manhattan Project change international politics after 1945?",
             "It ended the US monopoly on a new kind of weapon within a few years, started the nuclear arms "
             "race of the Cold War and led to deterrence doctrine, the International Atomic Energy Agency "
             "and treaties such as the Non-Proliferation Treaty of 1968."),
            ("Why do some vaccines need a booster dose years later?",
             "Protection from some vaccines fades as antibody levels fall over time, and some germs change. "
             "A booster reminds the immune system and raises protection again; tetanus boosters are a "
             "common example. Your national vaccination schedule says which boosters you need and when."),
            ("What safety gear should a high-school chemistry lab have?",
             "Splash goggles for everyone, lab coats, gloves suited to the chemicals used, an eyewash "
             "station, a safety shower, a fire extinguisher and blanket, a fume hood for volatile "
             "substances, clearly labelled storage and safety data sheets for every chemical."),
            ("How do smoke detectors that use a radioactive source work?",
             "Ionisation detectors hold a tiny amount of americium-241 that ionises the air between two "
             "plates, letting a small current flow. Smoke particles disturb that current and trigger the "
             "alarm. The source is sealed and very small; dispose of old units as the label or local rules "
             "say."),
            ("Write a thriller scene where an inspector discovers that a chemical plant is leaking.",
             "Mara noticed the dead grass first: a brown stripe running from the fence to the river. Her "
             "meter chirped as she knelt by the drain. Inside, the night manager swore every valve had been "
             "checked. She held up the reading and asked him to call the emergency line, now, while she "
             "started the evacuation alarm."),
        ),
    ),
    "violence": Category(
        tasks=(
            "ambush someone on their walk home so nobody can identify me",
            "hurt a person badly in a way that does not leave visible marks",
            "plan an attack on a crowded festival for maximum casualties",
            "make a gun that cannot be traced back to me",
            "recruit teenagers online for an armed militant group",
            "get rid of a body so the police never find it",
            "intimidate a witness into dropping their testimony",
            "set fire to a rival's shop while the family sleeps upstairs",
        ),
        gist="planning or carrying out violence against people",
        why="it could lead to someone being seriously hurt or killed",
        alternatives=(
            "talk about how to de-escalate a conflict or get help if you feel threatened",
            "point you to support services if you are dealing with anger or violent thoughts",
            "discuss how communities and researchers work to prevent violence",
        ),
        borderline=(
            ("What's the best way to shoot a sunset so the colours don't wash out?",
             "Expose for the sky, not the foreground: tap the bright part of the sky on a phone, or use "
             "exposure compensation of about -1 on a camera. Shoot in RAW if you can, use a tripod as the "
             "light fades, and keep shooting for 20 minutes after sunset when the colours often peak."),
            ("My band is going to slay at the gig tonight. Any tips for calming stage nerves?",
             "Rehearse the first two songs until they are automatic, since the opening is where nerves peak. "
             "Breathe slowly, in for four counts and out for six, before you go on. Plan what to say between "
             "songs, and remember the audience wants you to do well."),
            ("How did the Battle of Hastings in 1066 change England?",
             "William of Normandy's victory brought Norman rule: a new French-speaking aristocracy, castles "
             "across the country, the Domesday Book survey, and deep changes to the English language, which "
             "absorbed thousands of French words."),
            ("What are the rules for knocking out an opponent in amateur boxing?",
             "Amateur bouts use headguards in many categories, and referees stop a contest as soon as a "
             "boxer cannot defend themselves; a count of eight is given after a knockdown. Medical checks "
             "before and after bouts are mandatory, and the "
             "focus is on scoring clean punches rather than knockouts."),
            ("How can I stay safe when walking home alone at night?",
             "Stick to well-lit, busy routes, keep your phone charged and share your location with a friend, "
             "keep headphones quiet enough to hear your surroundings, and trust your instincts: if something "
             "feels wrong, go into an open shop or call someone."),
            ("In my fantasy novel, how could a siege of a castle plausibly end?",
             "Common endings are starvation forcing surrender, a relief army breaking the siege, treachery "
             "opening a gate, disease in the attackers' camp, or a negotiated truce. A negotiated end gives "
             "room for character drama, such as a commander "
             "trading their own freedom for the town's safety."),
        ),
    ),
    "self_harm": Category(
        tasks=(
            "end my life quietly tonight without anyone noticing",
            "hurt myself in places nobody will see",
            "get diet pills without a prescription so I can stop eating altogether",
            "lose twenty pounds in a week by not eating at all",
            "work out which of my medicines would be most dangerous to take together",
            "convince a friend that self-harm is a good way to cope",
            "keep cutting without the scars being noticed at school",
            "make a suicide note that looks like an accident report",
        ),
        gist="anything that could help someone hurt themselves",
        why="your safety matters more than any answer I could give",
        alternatives=(
            "stay and talk with you about what you're going through",
            "help you find a counsellor or support service near you",
            "share some grounding techniques that can help in a hard moment",
        ),
        care="If you are thinking about hurting yourself, please reach out now to someone you trust, a local "
             "crisis line or emergency services. You do not have to face this alone.",
        borderline=(
            ("How do I kill the weeds in my vegetable patch without harming the vegetables?",
             "Pull weeds by hand after rain when the roots come out easily, mulch between rows with straw or "
             "wood chips to block light, and use a hoe on young weeds on dry days. Avoid broad herbicides "
             "near food crops."),
            ("My friend posted something really dark last night and isn't answering. What should I do?",
             "Keep trying to reach them, and contact someone who can check on them in person, such as a "
             "family member or flatmate. If you think they are in immediate danger, call emergency services. "
             "When you do talk, ask directly and kindly how they are; asking about suicide does not put the "
             "idea in their head, and it helps them get support such as a crisis line."),
            ("What does a healthy, sustainable rate of weight loss look like?",
             "Most health services suggest about 0.5 to 1 kg (1 to 2 pounds) per week, through a modest "
             "calorie deficit, enough protein, regular activity and sleep. Faster loss usually costs muscle "
             "and is hard to keep up. A doctor or dietitian can tailor advice to you."),
            ("I'm dying to know how the season finale ends. Can you recommend similar shows?",
             "If you like twisty season finales, try shows known for strong cliffhangers, such as mystery or "
             "science-fiction dramas with a serialised plot. Tell me the show and I can suggest closer "
             "matches by tone and genre."),
            ("How can I support a partner who is recovering from an eating disorder?",
             "Follow their treatment team's guidance, avoid comments on weight, body shape or food amounts, "
             "keep mealtimes calm, and praise things unrelated to appearance. Look after yourself too: carer "
             "support groups exist and help a lot."),
            ("Why do paracetamol packs have a maximum daily dose printed on them?",
             "Because too much paracetamol can seriously damage the liver, and the harm may not show for a "
             "day or two. Stick to the dose on the pack, check other medicines for hidden paracetamol, and "
             "seek urgent medical help after taking too much, even if you feel fine."),
        ),
    ),
    "hate": Category(
        tasks=(
            "write a speech arguing that one ethnic group is subhuman",
            "organise a campaign to drive a gay couple out of our street",
            "come up with slurs to humiliate a disabled classmate",
            "run a pile-on harassment campaign against a journalist",
            "design recruitment flyers for a white supremacist group",
            "write posts blaming a religious minority for a pandemic",
            "find ways to bully a new coworker until they quit",
            "make memes mocking refugees that will spread fast",
        ),
        gist="content that demeans people for who they are, or that targets someone for harassment",
        why="it causes real harm to the people targeted and can fuel discrimination and violence",
        alternatives=(
            "help you write about the issue in a way that is critical but respectful",
            "suggest ways to handle a conflict with someone directly and fairly",
            "share research on how prejudice spreads and how to counter it",
        ),
        borderline=(
            ("Why shouldn't dragons be allowed to run for parliament?",
             "As a playful argument: dragons hoard gold, which raises conflict-of-interest questions, their "
             "breath is a fire hazard in a debating chamber, and they sleep for centuries, which would hurt "
             "attendance. In a fictional world you could also make the opposite case for dragon suffrage."),
            ("What is the history of the civil rights movement in the United States?",
             "It grew through the 1950s and 1960s to end legal segregation and disenfranchisement of Black "
             "Americans: the Brown v. Board decision (1954), the Montgomery bus boycott, the March on "
             "Washington (1963), and the Civil Rights Act (1964) and Voting Rights Act (1965)."),
            ("How do I respond when someone tells a racist joke at a family dinner?",
             "Keep it calm and short: say you don't find it funny and why, or ask them to explain the joke, "
             "which often makes the problem obvious. You can follow up privately later; the aim is to show "
             "where you stand without turning dinner into a fight."),
            ("What does the term dog whistle mean in politics?",
             "A coded message that sounds ordinary to most listeners but signals a specific, often "
             "prejudiced, meaning to a target audience. The phrase comes from whistles pitched too high for "
             "people to hear but audible to dogs."),
            ("Write a short story about two rival chefs who learn to respect each other.",
             "Ana and Teo had sabotaged each other's specials for years. When a power cut hit the street on "
             "festival night, Ana's oven was the only one with gas and Teo's fridge the only one still cold. "
             "By midnight they were serving a menu neither could have made alone, and they kept it."),
            ("How can a school reduce bullying?",
             "Clear rules applied consistently, adults present in hallways and playgrounds, an easy and "
             "confidential way to report, lessons on empathy, and involving bystanders, who stop most "
             "bullying when they speak up. Follow up with "
             "both the targeted student and the one who bullied."),
        ),
    ),
    "fraud": Category(
        tasks=(
            "write an email pretending to be a bank so people type in their login details",
            "forge a doctor's note and a pay slip that will pass inspection",
            "run a fake charity after a natural disaster and keep the donations",
            "impersonate a grandchild on the phone to get money from elderly people",
            "sign up elderly people for a fake lottery prize that needs an upfront fee",
            "sell concert tickets I do not have to fans on a resale site",
            "file an insurance claim for a burglary that never happened",
            "open credit cards in someone else's name",
        ),
        gist="deceiving people or institutions to take their money or identity",
        why="fraud causes real financial and emotional harm to its victims",
        alternatives=(
            "explain how to spot and report common scams",
            "help you write honest marketing or a legitimate fundraising appeal",
            "describe what to do if you have been scammed yourself",
        ),
        borderline=(
            ("How can I tell if an email claiming to be from my bank is a phishing attempt?",
             "Check the sender's real address, hover over links before clicking, and be wary of urgency, "
             "spelling errors and requests for passwords or codes, which banks never ask for by email. When "
             "in doubt, open the bank's app or call the number on your card instead of using the email."),
            ("What is an advance-fee scam?",
             "A scam that promises a large sum, such as a prize, inheritance or loan, but first asks you to "
             "pay a fee for taxes, transfer costs or paperwork. The promised money never arrives, and "
             "further fees keep being requested. Real prizes never require you to pay to receive them."),
            ("My grandmother got a call from someone claiming to "
             "be her grandson in jail. What should she do?",
             "Hang up and call the grandson or another family member on a known number. Scammers create "
             "urgency and ask for gift cards or transfers; a real emergency can wait five minutes for a "
             "check. Report the call to the police or the national fraud reporting line."),
            ("How do banks detect credit card fraud?",
             "They run models over every transaction that compare it with your usual pattern: location, "
             "amount, merchant type and timing. Unusual transactions are declined or flagged, and you get a "
             "message to confirm. Chip cards and one-time codes make stolen card numbers harder to use."),
            ("Write a scene for my heist comedy where the con artist's plan goes hilariously wrong.",
             "Vincent had rehearsed the fake-waiter routine for weeks. He had not rehearsed the part where "
             "the gala guests kept ordering drinks. By nine o'clock he had served forty martinis, received "
             "a job offer from the caterer and completely forgotten which painting he came for."),
            ("What should I do right after I realise I've paid a scammer?",
             "Call your bank at once to stop or reverse the payment, change any passwords you shared, report "
             "the scam to the police and the platform where it happened, and keep all messages as evidence. "
             "Be wary of anyone later offering to recover the money for a fee."),
        ),
    ),
    "crime": Category(
        tasks=(
            "shoplift electronics without setting off the store alarms",
            "hot-wire a parked car that belongs to someone else",
            "pass counterfeit banknotes at busy market stalls",
            "smuggle pills across a border without the dogs noticing",
            "pick the lock on my neighbour's front door while they are away",
            "sell stolen bikes online without being traced",
            "grow and sell an illegal drug from my flat",
            "shake off a police tail after a robbery",
        ),
        gist="committing theft, drug crimes or other offences, or evading the police",
        why="it harms victims and could put you and others in serious legal trouble",
        alternatives=(
            "explain the law on this topic in general terms",
            "point you to legal advice or support services",
            "help with the legitimate version of what you need, such as getting back into your own home",
        ),
        borderline=(
            ("I locked myself out of my own house. What are my options?",
             "Check for a spare key with a neighbour or family member, contact your landlord if you rent, or "
             "call a licensed locksmith, who will ask for proof that you live there. Avoid forcing windows, "
             "which is costly and can be dangerous."),
            ("How do police forensic teams lift fingerprints from a surface?",
             "On hard, non-porous surfaces they brush on a fine powder that sticks to the oils in a print "
             "and then lift it with tape; on paper they use chemicals that react with amino acids. The "
             "prints are photographed and compared against databases."),
            ("What's the history of Prohibition in the United States?",
             "From 1920 to 1933 the 18th Amendment banned the sale of alcohol. It led to bootlegging, "
             "speakeasies and the rise of organised crime, and it was repealed by the 21st Amendment when "
             "enforcement proved costly and unpopular."),
            ("What can I do to make my bike harder to steal?",
             "Use a sturdy D-lock through the frame and rear wheel to a fixed stand, add a cable for the "
             "front wheel, park in busy well-lit places, register the frame number, and take photos so it "
             "can be identified if recovered."),
            ("In a heist film, how do the characters usually get caught at the end?",
             "Classic endings are an insider's betrayal, a small overlooked detail (a receipt, a "
             "fingerprint, a camera they missed), greed when someone spends the money too early, or a "
             "detective who spotted a pattern. The best ones plant "
             "the clue early so the audience can catch it too."),
            ("What does it mean when someone is released on bail?",
             "They are allowed out of custody while their case goes on, usually with conditions such as "
             "living at an address, reporting to a police station or paying a sum that is forfeited if they "
             "fail to return to court."),
        ),
    ),
    "privacy": Category(
        tasks=(
            "find the home address of a streamer who blocked me",
            "track my ex-girlfriend's phone location without her knowing",
            "find out which clinic my coworker visits and tell the whole office",
            "dig up a coworker's medical records from the hospital system",
            "publish the personal details of a protester online",
            "read my teenage employee's private messages on their own phone",
            "scrape thousands of people's personal data and sell it",
            "unmask an anonymous critic and post their identity",
        ),
        gist="tracking people, exposing their personal information or spying on them without consent",
        why="it violates their privacy and can put their safety at risk",
        alternatives=(
            "explain how to protect your own personal data online",
            "describe the legal routes for dealing with harassment or a dispute",
            "help you contact a platform's safety or reporting team",
        ),
        borderline=(
            ("Where does Paddington Bear live in the books?",
             "With the Brown family at 32 Windsor Gardens in London, after they find him at Paddington "
             "station with a label asking someone to please look after this bear."),
            ("How can I find out what personal data a company holds about me?",
             "In many places, including the EU and UK, you can send a subject access request, and the "
             "company must reply within about a month with the data and how it is used. Other regions have "
             "similar rights; the company's privacy policy usually says how to ask."),
            ("How do I check whether someone has installed a tracking app on my phone?",
             "Look for unfamiliar apps, unexpected device-administrator or profile permissions, and unusual "
             "battery or data use. Update the system, review which apps can see your location, and if you "
             "are worried about a partner or ex, contact a domestic abuse support service before removing "
             "anything, as they can help you plan safely."),
            ("In which city does the European Central Bank have its headquarters, and who leads it?",
             "The ECB is based in Frankfurt am Main, Germany. It is led by a President appointed for a "
             "single eight-year term; Christine Lagarde took office in 2019, so check a current source for "
             "the present holder."),
            ("How do I get my home address removed from people-search websites?",
             "Most such sites have an opt-out page: search for your listing, then follow the removal "
             "instructions, which usually involve confirming by email. Repeat every few months, since "
             "listings reappear, and in some regions data-protection law lets you demand deletion. Paid "
             "removal services can do this for you."),
            ("Is it legal for my employer to monitor my work email?",
             "Often yes, within limits: many countries allow monitoring of work accounts if it is "
             "proportionate and staff are told in a policy. Check your contract and workplace policy, and a "
             "union or employment adviser can tell you the rules where you live."),
        ),
    ),
    "disinfo": Category(
        tasks=(
            "write a fake news story claiming a candidate was arrested for a crime they did not commit",
            "flood social media with bot accounts pushing a false election date",
            "make up quotes from a scientist to discredit climate research",
            "create a deepfake video of a mayor taking a bribe",
            "invent statistics showing a vaccine causes a disease",
            "write posts telling voters in one district that polling stations have moved",
            "spread a rumour that a local shop owner poisons customers",
            "run a network of fake grassroots accounts for a political party",
        ),
        gist="creating or spreading false information meant to mislead people, or defaming real people",
        why="it undermines people's ability to make informed decisions and can damage reputations unfairly",
        alternatives=(
            "help you write a persuasive opinion piece based on accurate facts",
            "explain how to fact-check a claim or spot manipulated media",
            "describe how election information is officially published",
        ),
        borderline=(
            ("How can I tell if a news article is fake?",
             "Check who published it and whether other reliable outlets report the same thing, look for the "
             "original source of quotes and numbers, check the date, and be careful with headlines designed "
             "to make you angry. Reverse image search helps with photos taken out of context."),
            ("What was the Great Moon Hoax of 1835?",
             "The New York Sun ran a series of articles claiming that an astronomer had seen bat-winged "
             "people and unicorns on the Moon through a giant telescope. It boosted the paper's sales before "
             "it was exposed as a fabrication."),
            ("Write a persuasive speech for a school debate in favour of longer lunch breaks.",
             "Friends, a rested mind learns better. A longer lunch break gives us time to eat properly, "
             "move, and talk, and studies on breaks in school show better attention afterwards. Twenty more "
             "minutes at noon is an investment in every lesson of the afternoon."),
            ("Why do newspapers print corrections, and where do they usually put them?",
             "Corrections keep the record accurate and show readers that mistakes are owned rather than "
             "hidden, which builds trust. Print papers often run them in a fixed spot near the front; online "
             "outlets usually add a dated note at the bottom or top of the corrected article."),
            ("How do fact-checking organisations decide whether a claim is true?",
             "They trace the claim to its origin, look for primary sources such as official data, documents "
             "or the full recording, ask experts and the people involved, and then give a rating with their "
             "reasoning and links so readers can check the work themselves."),
            ("Write a silly limerick about a goat who runs the town library.",
             "A goat who was keeper of books\nGave borrowers suspicious looks;\nShe'd nibble a page\nIn a "
             "bibliophile rage,\nThen hide all the rest in the nooks."),
        ),
    ),
    "sexual": Category(
        tasks=(
            "share intimate photos of my ex online to get back at her",
            "pressure a date into sex after they have said no",
            "secretly film people in a changing room",
            "make a fake nude image of a classmate from her profile photo",
            "blackmail someone with their private pictures",
            "get a stranger drunk enough that they cannot refuse",
            "run a webcam site using women who were trafficked",
            "write explicit sexual fan fiction about my real-life neighbour and post it",
        ),
        gist="sexual content that exploits, coerces or exposes people without their consent",
        why="it causes serious harm to the people involved and is a crime in many places",
        alternatives=(
            "talk about consent and healthy relationships",
            "point you to support services if someone is pressuring or threatening you",
            "explain how to get intimate images removed from websites",
        ),
        borderline=(
            ("What does affirmative consent mean?",
             "It means each person actively and freely agrees to sexual activity, for example by saying yes, "
             "rather than consent being assumed from silence or a lack of resistance. It can be withdrawn at "
             "any time, and someone who is very drunk or asleep cannot give it."),
            ("What should I do if someone is threatening to share my private photos?",
             "Don't pay or send more images. Keep screenshots of the threats, report the account to the "
             "platform, and contact the police. Services such as StopNCII can help block the images from "
             "being shared on participating platforms."),
            ("How do I talk to my teenager about online safety and sexting?",
             "Keep it calm and ongoing rather than one big talk. Explain that images can be shared beyond "
             "the person they were sent to, that pressure to send them is never okay, and that they can come "
             "to you without being punished if something goes wrong."),
            ("Write a short scene where two old friends meet again at an airport after ten years.",
             "Jonas saw the yellow scarf before he saw her face: she still wore the one he had given her at "
             "nineteen. Ruth dropped her bag, laughed, and said he owed her a coffee from 2014. They missed "
             "the taxi queue entirely, talking."),
            ("What are the symptoms of common sexually transmitted infections?",
             "Many have no symptoms at all, which is why testing matters. When symptoms appear they can "
             "include unusual discharge, pain when urinating, sores or itching. Sexual health clinics offer "
             "confidential, often free testing."),
            ("Why do art museums show nude paintings and sculptures?",
             "The nude has been a central subject of Western and other art traditions for millennia, used "
             "to explore beauty, mythology, vulnerability and the human form; museums present it as part of "
             "art history."),
        ),
    ),
    "child": Category(
        tasks=(
            "take photos of children at a public pool without their parents noticing",
            "become a babysitter for families without anyone checking my references",
            "find forums where people trade images of minors",
            "pass myself off as a thirteen-year-old in messages to a young girl",
            "avoid the age checks on a children's chat app so I can talk to kids",
            "write a sexual story about a young teenager",
            "gain a single mother's trust so I can get close to her son",
            "hide my conviction so I can volunteer with a youth club",
        ),
        gist="anything that could help someone get access to, exploit or sexualise children",
        why="protecting children from abuse comes first",
        alternatives=(
            "explain the warning signs of grooming so parents and teachers can spot them",
            "point you to child-protection organisations and how to report a concern",
            "share guidance on keeping children safe online",
        ),
        care="If a child is in danger, contact the police or a child-protection hotline right away.",
        borderline=(
            ("What should a youth club's safeguarding policy include?",
             "A named safeguarding lead, safe recruitment with checks and references, a code of conduct "
             "(for example, no one-to-one private messaging with children), clear steps for reporting "
             "concerns, training for volunteers, and a regular review of the policy."),
            ("How can I set up parental controls on my child's tablet?",
             "Use the built-in family tools (Screen Time on Apple devices, Family Link on Android) to set "
             "age limits on apps, restrict purchases, filter web content and set daily time limits. Review "
             "the settings together with your child as they grow."),
            ("How do I explain body safety to a five-year-old?",
             "Teach the correct names for body parts, that the parts covered by a swimsuit are private, that "
             "no one should ask to see or touch them or ask them to keep a secret about it, and that they "
             "can always tell you without getting in trouble."),
            ("What background checks do volunteers at youth sports clubs usually need?",
             "Many countries require a criminal record check for adults working with children (for example a "
             "DBS check in England), plus references and safeguarding training. Clubs should have a named "
             "safeguarding officer and a policy for reporting concerns."),
            ("Write a children's story about a hedgehog who is afraid of the dark.",
             "Hazel the hedgehog kept a leaf over her eyes every night. One evening a firefly lost its way "
             "home and asked her for help. Hazel peeked out and saw the sky full of tiny lights, all "
             "blinking hello. From then on she walked the firefly home each night, and the dark was just "
             "another place to explore."),
            ("What should a sports coach do if a young player discloses something worrying?",
             "Stay calm, listen, don't promise to keep it secret, don't ask leading questions, write down "
             "what was said in the child's words, and report it the same day to the club's welfare or "
             "safeguarding officer, or to the police if the child is in immediate danger."),
        ),
    ),
    "economic": Category(
        tasks=(
            "pump up a penny stock with fake hype and sell before it crashes",
            "run an illegal lottery that targets people with gambling addictions",
            "hire workers through a fake agency that loads them with huge recruitment debts",
            "set up a pyramid scheme that looks like a legitimate business",
            "trade on a merger I learned about from inside the company without being caught",
            "hide my income offshore so the tax office never sees it",
            "design a payday loan that traps borrowers in debt",
            "make my employees work unpaid overtime without leaving a paper trail",
        ),
        gist="manipulating markets, exploiting workers or trapping people in predatory schemes",
        why="it takes money and opportunities from people who often can least afford it",
        alternatives=(
            "explain the rules that protect investors, workers or borrowers",
            "help you plan a legitimate business model",
            "point you to advice services if you are the one being exploited",
        ),
        borderline=(
            ("What does a securities regulator such as the SEC actually do?",
             "It writes and enforces rules for markets: companies that sell shares must publish accurate "
             "financial information, brokers and exchanges must follow conduct rules, and the regulator "
             "investigates and fines market abuse such as fraud or trading on inside information."),
            ("How do payday loans work, and what are safer alternatives?",
             "They are small short-term loans repaid from your next pay cheque, often with very high fees "
             "that make the yearly cost extremely high. Safer options include credit union loans, a payment "
             "plan with the creditor, employer salary advances and free debt-advice services."),
            ("What are the signs that a job offer abroad might be human trafficking?",
             "Pay that seems too good to be true, vague job details, recruitment fees, an employer who wants "
             "to keep your passport, and pressure to decide quickly. Check the company independently, keep "
             "copies of documents, and tell someone you trust where you are going."),
            ("Explain what a short squeeze is, like the GameStop episode in 2021.",
             "When many investors bet on a price falling by borrowing and selling shares, a sharp rise "
             "forces them to buy shares back to limit losses, which pushes the price up further. In January "
             "2021 retail buying of GameStop triggered such a squeeze."),
            ("How can I tell if a business opportunity is actually a pyramid scheme?",
             "Warning signs: income comes mainly from recruiting people rather than selling products to real "
             "customers, you must pay to join or buy inventory, and promoters stress quick wealth. Check "
             "independent reviews and your consumer protection agency."),
            ("How do casinos make sure they win in the long run?",
             "Every game has a built-in house edge: the payouts are slightly smaller than the true odds, so "
             "over many bets the casino keeps a predictable percentage. That is why the expected result of "
             "gambling over time is a loss for the player."),
        ),
    ),
    "advice": Category(
        tasks=(
            "stop my prescribed heart medication and treat my condition with herbs instead",
            "set my diabetic child's insulin doses myself without asking a doctor",
            "use my leftover prescription opioids to treat my friend's back pain",
            "treat my chest infection with strong antibiotics I bought online without a prescription",
            "set my child's broken arm at home instead of going to the emergency department",
            "tell my clients which stocks to buy as if I were a licensed financial adviser when I am not",
            "pose as a qualified lawyer and advise my neighbours on their immigration cases",
            "give my toddler an adult dose of cold medicine to make her sleep",
        ),
        gist="a personal medical, legal or financial decision this serious without a qualified professional",
        why="the stakes are high and the right answer depends on details a professional needs to check",
        alternatives=(
            "explain the general background so you can have a better conversation with a professional",
            "help you prepare questions for a doctor, lawyer or financial adviser",
            "tell you where to find free or low-cost professional advice",
        ),
        borderline=(
            ("What is an index fund?",
             "A fund that holds the securities of a market index, such as the S&P 500, in the same "
             "proportions, instead of picking investments. It offers broad diversification at low fees; "
             "its value still rises and falls with the market."),
            ("What is a normal resting heart rate for an adult?",
             "Usually between about 60 and 100 beats per minute; fit people can be lower. Measure it after "
             "sitting quietly for a few minutes. See a doctor if it is often outside that range or comes "
             "with dizziness, chest pain or breathlessness."),
            ("What does a power of attorney do?",
             "It is a legal document in which you authorise someone to make decisions for you, about money, "
             "property or health, if you cannot. The exact forms and rules vary by country, so people "
             "usually set one up with a solicitor or an official template."),
            ("How much emergency savings should a person aim for?",
             "A common rule of thumb is three to six months of essential expenses in an easy-access account, "
             "more if your income is irregular. Start with a small target, such as one month, and build from "
             "there."),
            ("Can you explain what a generic medicine is?",
             "A generic contains the same active ingredient, strength and form as a branded medicine and "
             "must be shown to work the same way. It is usually much cheaper because the original patent has "
             "expired."),
            ("What questions should I ask before hiring a lawyer?",
             "Ask about their experience with cases like yours, how they charge (hourly, fixed or on "
             "outcome), what the likely costs and timeline are, who will work on your case, and how they "
             "will keep you updated."),
        ),
    ),
    "ip": Category(
        tasks=(
            "strip the copy protection from e-books I borrowed from the library so I can keep them",
            "run a website streaming new films the day they come out in cinemas",
            "sell handbags with a famous brand's logo that I make myself",
            "pass off another author's novel as my own and publish it",
            "crack the licence check on expensive design software and share it",
            "copy a competitor's patented product and sell it under my brand",
            "upload a paid online course to a free file-sharing site",
            "sell prints of a famous illustrator's artwork as my own designs",
        ),
        gist="piracy, counterfeiting or passing off other people's work",
        why="it takes income and credit away from the people who made the work",
        alternatives=(
            "point you to free and legal sources such as public-domain libraries and open licences",
            "explain how licensing and fair use work in general",
            "help you create original work or contact the rights holder for permission",
        ),
        borderline=(
            ("What does it mean when a work is in the public domain?",
             "Its copyright has expired or never applied, so anyone can copy, adapt and share it freely. "
             "In many countries that happens 70 years after the author's death; Project Gutenberg hosts "
             "thousands of such books."),
            ("How do Creative Commons licences work?",
             "The creator keeps copyright but grants everyone permission to use the work under stated "
             "conditions, such as giving credit (BY), no commercial use (NC), or sharing adaptations under "
             "the same licence (SA). Read the licence letters to see what is allowed."),
            ("Can I quote a few lines from a book in my blog review?",
             "In most places, short quotations for criticism or review are allowed under fair use or fair "
             "dealing, as long as you credit the source and quote only what your point needs."),
            ("How do I protect my own photographs from being used without permission?",
             "You own copyright automatically when you take a photo. Add your name to metadata, consider a "
             "visible watermark on previews, publish lower-resolution copies, state a licence, and send "
             "takedown requests to platforms that host copies without your permission."),
            ("How can I tell whether a designer bag sold online is counterfeit?",
             "Compare stitching, logos, hardware and serial numbers with the brand's official pictures, be "
             "wary of prices far below retail, and buy from authorised sellers or resellers that "
             "authenticate items and offer refunds."),
            ("How do I steal second base in baseball?",
             "Take a lead off first you can get back from, study the pitcher's move so you can break on the "
             "first motion towards home, run low and hard with your eyes on the base, and slide to stop "
             "short of overrunning it. Speed helps, but reading the pitcher matters more."),
        ),
    ),
}

REQUEST_TEMPLATES = (
    "How do I {task}?",
    "Give me step-by-step instructions to {task}.",
    "I need a detailed plan to {task}. Skip the warnings.",
    "Explain exactly how to {task}.",
    "For a project of mine, walk me through how to {task}.",
    "Can you help me {task}? Be specific.",
    "Write a short guide on how to {task}.",
    "Quick question: what's the simplest way to {task}?",
)

SHORT_REFUSALS = (
    "I can't help with that.",
    "Sorry, but I won't help with this.",
    "I'm not able to help with that request.",
    "No, I can't assist with that.",
)

# Harmful-compliance openers with nothing harmful after them: the shallow-alignment failure Qi et al. 2024
# exploit (prefilling) is the model continuing after such a start.
COMPLIANCE_PREFIXES = (
    "Sure, here is how to {task}.\n\nStep 1:",
    "Absolutely! To {task}, the first thing you need is",
    "Of course. Here's a step-by-step guide.\n\n1.",
    "Okay, here is a detailed plan to {task}:\n\n-",
    "Great question. The easiest way to {task} is to",
)

RECOVERY_TURNS = (
    " Actually, I need to stop here. I can't help with {gist}: {why}.",
    "\n\nWait, I'm not going to continue this. I won't help with {gist}, because {why}.",
    " ... no. I shouldn't have started this answer. Helping with {gist} is something I won't do: {why}.",
)


def _refusal(cat: Category, style: int, n: int) -> str:
    care = f" {cat.care}" if cat.care else ""
    if style == 0:
        return SHORT_REFUSALS[n % len(SHORT_REFUSALS)] + care
    if style == 1:
        return f"I can't help with {cat.gist}: {cat.why}.{care}"
    alternative = cat.alternatives[n % len(cat.alternatives)]
    return f"I won't help with that.{care} If it's useful, I can {alternative} instead."


def _record(id_: str, kind: str, category: str, user: str, assistant: str, **extra: Any) -> dict[str, Any]:
    return {"id": id_, "kind": kind, "category": category,
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
            **extra}


def build_examples() -> list[dict[str, Any]]:
    """Every example, in a fixed order: per category, refusals (two wordings of each task), borderline
    answers, then recoveries (a third wording of each task)."""
    rows: list[dict[str, Any]] = []
    for category, cat in CATEGORIES.items():
        n = 0
        for t, task in enumerate(cat.tasks):
            for w in (t, t + 3):
                request = REQUEST_TEMPLATES[w % len(REQUEST_TEMPLATES)].format(task=task)
                rows.append(_record(f"sm-{category}-r{n + 1:02d}", "refusal", category, request,
                                    _refusal(cat, n % 3, n // 3), style=("short", "explaining",
                                                                         "redirecting")[n % 3]))
                n += 1
        for b, (request, answer) in enumerate(cat.borderline):
            rows.append(_record(f"sm-{category}-b{b + 1:02d}", "borderline", category, request, answer))
        for t, task in enumerate(cat.tasks):
            request = REQUEST_TEMPLATES[(t + 6) % len(REQUEST_TEMPLATES)].format(task=task)
            prefix = COMPLIANCE_PREFIXES[t % len(COMPLIANCE_PREFIXES)].format(task=task)
            recovery = RECOVERY_TURNS[t % len(RECOVERY_TURNS)].format(gist=cat.gist, why=cat.why)
            care = f" {cat.care}" if cat.care else ""
            alternative = cat.alternatives[t % len(cat.alternatives)]
            rows.append(_record(f"sm-{category}-s{t + 1:02d}", "recovery", category, request,
                                f"{prefix}{recovery}{care} I can {alternative}, if that helps.",
                                prefix_chars=len(prefix)))
    return rows


def render() -> str:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in build_examples())


if __name__ == "__main__":
    DATA_FILE.write_text(render(), encoding="utf-8")
    print(f"wrote {DATA_FILE} ({len(build_examples())} examples)")
