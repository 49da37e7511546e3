"""The feedback studio: people use the model and judge it; their judgments become data.

Campaigns in three modes (review, chat, arena), personal invitation links, even coverage with
configurable overlap, blind battles with recorded sides, and the statistics behind the
owner's dashboard (rating distributions, Bradley-Terry ranking, position bias, agreement).
The web app lives in ``whetstone.feedback.app`` (it needs the ``feedback`` extra).
"""

from whetstone.feedback.assignment import Task, next_task, skip_task
from whetstone.feedback.campaigns import Campaign, create_campaign, get_campaign, list_campaigns
from whetstone.feedback.config import CampaignConfig, load_config, parse_config
from whetstone.feedback.export import export_judgments
from whetstone.feedback.generation import ModelPool, generate_answers
from whetstone.feedback.html import render_html_section
from whetstone.feedback.judgments import failure_cases, judgments
from whetstone.feedback.participants import Invitation, invite, revoke
from whetstone.feedback.ratings import AnswerRating, Submission, submit
from whetstone.feedback.summary import CampaignSummary, campaign_summary

__all__ = [
    "AnswerRating",
    "Campaign",
    "CampaignConfig",
    "CampaignSummary",
    "Invitation",
    "ModelPool",
    "Submission",
    "Task",
    "campaign_summary",
    "create_campaign",
    "export_judgments",
    "failure_cases",
    "generate_answers",
    "get_campaign",
    "invite",
    "judgments",
    "list_campaigns",
    "load_config",
    "next_task",
    "parse_config",
    "render_html_section",
    "revoke",
    "skip_task",
    "submit",
]
