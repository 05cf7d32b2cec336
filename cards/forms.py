"""Choosing cards: all of a company's cards or a selection, shared by the start-job forms."""

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import BusinessCard


class CardSelectionForm(forms.Form):
    CARDS_ALL = "all"
    CARDS_SELECTED = "selected"
    #: which choice is preselected; subclasses pick what suits their job
    default_card_mode = CARDS_SELECTED

    card_mode = forms.ChoiceField(
        label=gettext_lazy("Cards"),
        choices=[
            (CARDS_ALL, gettext_lazy("All cards of the company")),
            (CARDS_SELECTED, gettext_lazy("Only the cards I select")),
        ],
        widget=forms.RadioSelect,
    )
    cards = forms.ModelMultipleChoiceField(
        label=gettext_lazy("Selected cards"),
        queryset=BusinessCard.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, company, **kwargs):
        super().__init__(*args, **kwargs)
        self.company = company
        self.fields["card_mode"].initial = self.default_card_mode
        self.fields["cards"].queryset = BusinessCard.objects.filter(company=company).order_by(
            "full_name", "id"
        )

    def clean(self):
        """Leave the chosen cards as a list in cleaned_data["cards"], whichever the mode."""
        data = super().clean()
        if data.get("card_mode") == self.CARDS_ALL:
            data["cards"] = list(self.fields["cards"].queryset.select_related("company"))
            if not data["cards"]:
                self.add_error("card_mode", _("The company has no cards yet."))
        else:
            data["cards"] = list(data.get("cards") or [])
            if not data["cards"] and "cards" not in self.errors:
                self.add_error("cards", _("Choose at least one card."))
        return data
