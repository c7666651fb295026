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

    /// <summary>How often an answer of <paramref name="batch"/> that does not fit is asked again: its own limit, or the default.</summary>
    public static int MaxReasksOf(BatchRecord batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.MaxReasks ?? DefaultMaxReasks;
    }

    /// <summary>The rules of <paramref name="batch"/>; its schema was checked when it was created.</summary>
    public static OutputRules Of(BatchRecord batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var max = MaxReasksOf(batch);
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
            return null;
        }
        catch (JsonException ex)
        {
            return $"it is not JSON: {ex.Message}";
        }
        catch (JsonSchemaException ex)
        {
            // The library's words ("'objekt' is not a valid JSON Schema value type"), or where a $ref leads nowhere.
            return ex.Message;
        }
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
