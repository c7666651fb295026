using System.Text;
using System.Text.Json;
using Json.Schema;
using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Formats;

/// <summary>
/// What a batch asks of its answers: the schema of the whole batch (for requests that ask for none
/// of their own) and how often an answer that does not fit is asked again. Checks an answer
/// against what its request asked for, the same way for the dispatcher and the native runner.
/// </summary>
/// <param name="Schema">The batch's own schema; null for none.</param>
/// <param name="MaxReasks">How often an answer that does not fit is asked again before its request fails.</param>
public sealed record OutputRules(OutputContract? Schema, int MaxReasks)
{
    /// <summary>How often an answer that does not fit is asked again when the batch says nothing.</summary>
    public const int DefaultMaxReasks = 2;

    /// <summary>The most re-asks a batch may ask for.</summary>
    public const int MostReasks = 10;

    /// <summary>The most errors an <c>invalid_output</c> message lists.</summary>
    private const int MostErrorsTold = 10;

    /// <summary>No schema of the batch's own, the default re-asks.</summary>
    public static OutputRules Default { get; } = new(null, DefaultMaxReasks);

    /// <summary>The rules of <paramref name="batch"/>; its schema was checked when it was created.</summary>
    public static OutputRules Of(BatchRecord batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var max = batch.MaxReasks ?? DefaultMaxReasks;
        if (batch.OutputSchema is not { } text)
        {
            return max == DefaultMaxReasks ? Default : new(null, max);
        }

        using var document = JsonDocument.Parse(text);
        return new(StructuredOutput.ForSchema(document.RootElement), max);
    }

    /// <summary>
    /// Reads a batch's schema (the text of a JSON Schema document), as <see cref="NewBatch.OutputSchema"/>
    /// keeps it; returns why it is not one, or null when it is.
    /// </summary>
    public static string? Problem(string schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        try
        {
            using var document = JsonDocument.Parse(schema);
            if (document.RootElement.ValueKind is not (JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False))
            {
                return "a JSON Schema is an object (or true or false)";
            }

            StructuredOutput.ForSchema(document.RootElement);
            return Unresolved(document.RootElement) is { } reference
                ? $"its \"$ref\": \"{reference}\" leads nowhere in it (answers are checked against the schema alone; other documents are not fetched)"
                : null;
        }
        catch (JsonException ex)
        {
            return $"it is not JSON: {ex.Message}";
        }
        catch (JsonSchemaException ex)
        {
            return $"it is not a JSON Schema: {ex.Message}";
        }
    }

    /// <summary>
    /// The first <c>$ref</c> of <paramref name="root"/> that leads nowhere in it: a JSON Pointer
    /// (<c>#/$defs/x</c>) to nothing, or another document, unless an <c>$id</c> of the schema names it.
    /// </summary>
    private static string? Unresolved(JsonElement root)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var references = new List<string>();
        Collect(root, ids, references);
        foreach (var reference in references)
        {
            var hash = reference.IndexOf('#', StringComparison.Ordinal);
            var (document, fragment) = hash < 0 ? (reference, "") : (reference[..hash], reference[(hash + 1)..]);
            if (document.Length > 0 && !ids.Contains(document))
            {
                return reference;
            }

            if (document.Length == 0 && fragment.StartsWith('/') && !Leads(root, fragment))
            {
                return reference;
            }
        }

        return null;
    }

    private static void Collect(JsonElement element, HashSet<string> ids, List<string> references)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    if (property.Value.ValueKind == JsonValueKind.String && property.NameEquals("$ref"))
                    {
                        references.Add(property.Value.GetString()!);
                    }
                    else if (property.Value.ValueKind == JsonValueKind.String && property.NameEquals("$id"))
                    {
                        ids.Add(property.Value.GetString()!.TrimEnd('#'));
                    }
                    else
                    {
                        Collect(property.Value, ids, references);
                    }
                }

                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    Collect(item, ids, references);
                }

                break;
        }
    }

    /// <summary>Whether the JSON Pointer <paramref name="pointer"/> (<c>/$defs/x</c>) names a value in <paramref name="root"/>.</summary>
    private static bool Leads(JsonElement root, string pointer)
    {
        var at = root;
        foreach (var part in pointer.Split('/')[1..])
        {
            var name = Uri.UnescapeDataString(part).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (at.ValueKind == JsonValueKind.Object && at.TryGetProperty(name, out var next))
            {
                at = next;
            }
            else if (at.ValueKind == JsonValueKind.Array && int.TryParse(name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var index) && index < at.GetArrayLength())
            {
                at = at[index];
            }
            else
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>What a request to <paramref name="url"/> with <paramref name="body"/> asks its answer to be, or the batch's schema; null for free text. A request whose own schema is not one is not checked (its provider refuses it).</summary>
    public OutputContract? ContractOf(string url, ReadOnlySpan<byte> body)
    {
        try
        {
            return StructuredOutput.Of(url, body, Schema);
        }
        catch (JsonSchemaException)
        {
            return null;
        }
    }

    /// <summary>
    /// The successful <paramref name="answer"/> to a request to <paramref name="url"/>, checked
    /// against <paramref name="contract"/>: marked as fitting, or as not, with
    /// <see cref="FailureCodes.InvalidOutput"/> and what is wrong (the answer is kept); as it came
    /// when the schema cannot be followed for it.
    /// </summary>
    public static AttemptResult Checked(OutputContract contract, string url, AttemptResult answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        var check = StructuredOutput.Check(contract, url, answer.Body);
        return check.Verdict switch
        {
            OutputVerdict.Valid => answer with { Fits = true },
            OutputVerdict.Unchecked => answer,
            _ => answer with { Fits = false, ErrorCode = FailureCodes.InvalidOutput, ErrorMessage = Describe(check) },
        };
    }

    /// <summary>What is wrong with an answer, in one message: "the answer does not fit the schema: /a: …; /b: … (and 3 more)", or why it is not JSON.</summary>
    private static string Describe(OutputCheck check)
    {
        // What does not parse says so itself ("the answer is not JSON: …", "the model refused: …").
        var text = new StringBuilder(check.Verdict == OutputVerdict.NotJson ? "" : "the answer does not fit the schema: ");
        text.AppendJoin("; ", check.Errors.Take(MostErrorsTold));
        if (check.Errors.Count > MostErrorsTold)
        {
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $" (and {check.Errors.Count - MostErrorsTold} more)");
        }

        return text.ToString();
    }
}
