namespace Shepherd.Engine.Upstreams;

/// <summary>
/// A credential that must not leak: it prints as <c>***</c>, so a log line, an exception or a
/// debugger display that formats it cannot show the value.
/// </summary>
public sealed class Secret
{
    private readonly string _value;

    /// <summary>Wraps a credential.</summary>
    public Secret(string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(value);
        _value = value;
    }

    /// <summary>The credential itself, for the one place that sends it.</summary>
    public string Reveal() => _value;

    /// <summary>Always <c>***</c>.</summary>
    public override string ToString() => "***";
}
