//! The HTML element names the tree-construction rules single out, and the sets of them those
//! rules use (the same sets as html5ever's `tag_sets.rs`, which follows the HTML standard).

/// The namespace of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    Html,
    Svg,
    MathMl,
}

macro_rules! tags {
    ($($variant:ident = $name:literal,)*) => {
        /// An HTML element name the parsing rules name (`Other` for every other name).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Tag {
            Other,
            $($variant,)*
        }

        impl Tag {
            /// The tag for a lowercase HTML element name.
            pub(crate) fn of(name: &str) -> Self {
                match name {
                    $($name => Self::$variant,)*
                    _ => Self::Other,
                }
            }

            /// The element name (`Other` has none; the tree builder never creates one by tag).
            pub(crate) fn name(self) -> &'static str {
                match self {
                    Self::Other => "",
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

tags! {
    A = "a", Address = "address", Applet = "applet", Area = "area", Article = "article",
    Aside = "aside", B = "b", Base = "base", Basefont = "basefont", Bgsound = "bgsound",
    Big = "big", Blockquote = "blockquote", Body = "body", Br = "br", Button = "button",
    Caption = "caption", Center = "center", Code = "code", Col = "col", Colgroup = "colgroup",
    Dd = "dd", Details = "details", Dialog = "dialog", Dir = "dir", Div = "div", Dl = "dl",
    Dt = "dt", Em = "em", Embed = "embed", Fieldset = "fieldset", Figcaption = "figcaption",
    Figure = "figure", Font = "font", Footer = "footer", Form = "form", Frame = "frame",
    Frameset = "frameset", H1 = "h1", H2 = "h2", H3 = "h3", H4 = "h4", H5 = "h5", H6 = "h6",
    Head = "head", Header = "header", Hgroup = "hgroup", Hr = "hr", Html = "html", I = "i",
    Iframe = "iframe", Image = "image", Img = "img", Input = "input", Isindex = "isindex",
    Keygen = "keygen", Li = "li", Link = "link", Listing = "listing", Main = "main",
    Marquee = "marquee", Math = "math", Menu = "menu", Meta = "meta", Nav = "nav",
    Nobr = "nobr", Noembed = "noembed", Noframes = "noframes", Noscript = "noscript",
    Object = "object", Ol = "ol", Optgroup = "optgroup", Option = "option", P = "p",
    Param = "param", Plaintext = "plaintext", Pre = "pre", Rb = "rb", Rp = "rp", Rt = "rt",
    Rtc = "rtc", Ruby = "ruby", S = "s", Script = "script", Search = "search",
    Section = "section", Select = "select", Small = "small", Source = "source", Span = "span",
    Strike = "strike", Strong = "strong", Style = "style", Sub = "sub", Summary = "summary",
    Sup = "sup", Svg = "svg", Table = "table", Tbody = "tbody", Td = "td",
    Template = "template", Textarea = "textarea", Tfoot = "tfoot", Th = "th", Thead = "thead",
    Title = "title", Tr = "tr", Track = "track", Tt = "tt", U = "u", Ul = "ul", Var = "var",
    Wbr = "wbr", Xmp = "xmp",
}

impl Tag {
    /// `h1` … `h6`.
    pub(crate) fn is_heading(self) -> bool {
        matches!(
            self,
            Self::H1 | Self::H2 | Self::H3 | Self::H4 | Self::H5 | Self::H6
        )
    }

    /// The elements whose end tag the "generate implied end tags" steps supply.
    pub(crate) fn is_cursory_implied_end(self) -> bool {
        matches!(
            self,
            Self::Dd
                | Self::Dt
                | Self::Li
                | Self::Option
                | Self::Optgroup
                | Self::P
                | Self::Rb
                | Self::Rp
                | Self::Rt
                | Self::Rtc
        )
    }

    /// The HTML elements of the "special" category (html5ever's list).
    pub(crate) fn is_special(self) -> bool {
        use Tag::{
            Address, Applet, Area, Article, Aside, Base, Basefont, Bgsound, Blockquote, Body, Br,
            Button, Caption, Center, Col, Colgroup, Dd, Details, Dir, Div, Dl, Dt, Embed, Fieldset,
            Figcaption, Figure, Footer, Form, Frame, Frameset, H1, H2, H3, H4, H5, H6, Head,
            Header, Hgroup, Hr, Html, Iframe, Img, Input, Isindex, Li, Link, Listing, Main,
            Marquee, Menu, Meta, Nav, Noembed, Noframes, Noscript, Object, Ol, P, Param, Plaintext,
            Pre, Script, Section, Select, Source, Style, Summary, Table, Tbody, Td, Template,
            Textarea, Tfoot, Th, Thead, Title, Tr, Track, Ul, Wbr, Xmp,
        };
        matches!(
            self,
            Address
                | Applet
                | Area
                | Article
                | Aside
                | Base
                | Basefont
                | Bgsound
                | Blockquote
                | Body
                | Br
                | Button
                | Caption
                | Center
                | Col
                | Colgroup
                | Dd
                | Details
                | Dir
                | Div
                | Dl
                | Dt
                | Embed
                | Fieldset
                | Figcaption
                | Figure
                | Footer
                | Form
                | Frame
                | Frameset
                | H1
                | H2
                | H3
                | H4
                | H5
                | H6
                | Head
                | Header
                | Hgroup
                | Hr
                | Html
                | Iframe
                | Img
                | Input
                | Isindex
                | Li
                | Link
                | Listing
                | Main
                | Marquee
                | Menu
                | Meta
                | Nav
                | Noembed
                | Noframes
                | Noscript
                | Object
                | Ol
                | P
                | Param
                | Plaintext
                | Pre
                | Script
                | Section
                | Select
                | Source
                | Style
                | Summary
                | Table
                | Tbody
                | Td
                | Template
                | Textarea
                | Tfoot
                | Th
                | Thead
                | Title
                | Tr
                | Track
                | Ul
                | Wbr
                | Xmp
        )
    }

    /// Start tags that close an open `p` and open a block (`address` … `ul` in "in body").
    pub(crate) fn is_block_start(self) -> bool {
        use Tag::{
            Address, Article, Aside, Blockquote, Center, Details, Dialog, Dir, Div, Dl, Fieldset,
            Figcaption, Figure, Footer, Header, Hgroup, Main, Menu, Nav, Ol, P, Search, Section,
            Summary, Ul,
        };
        matches!(
            self,
            Address
                | Article
                | Aside
                | Blockquote
                | Center
                | Details
                | Dialog
                | Dir
                | Div
                | Dl
                | Fieldset
                | Figcaption
                | Figure
                | Footer
                | Header
                | Hgroup
                | Main
                | Menu
                | Nav
                | Ol
                | P
                | Search
                | Section
                | Summary
                | Ul
        )
    }

    /// End tags closed by "generate implied end tags, then pop until" in "in body".
    pub(crate) fn is_block_end(self) -> bool {
        use Tag::{
            Address, Article, Aside, Blockquote, Button, Center, Details, Dialog, Dir, Div, Dl,
            Fieldset, Figcaption, Figure, Footer, Header, Hgroup, Listing, Main, Menu, Nav, Ol,
            Pre, Search, Section, Select, Summary, Ul,
        };
        matches!(
            self,
            Address
                | Article
                | Aside
                | Blockquote
                | Button
                | Center
                | Details
                | Dialog
                | Dir
                | Div
                | Dl
                | Fieldset
                | Figcaption
                | Figure
                | Footer
                | Header
                | Hgroup
                | Listing
                | Main
                | Menu
                | Nav
                | Ol
                | Pre
                | Search
                | Section
                | Select
                | Summary
                | Ul
        )
    }

    /// Formatting elements (`a` and `nobr` have rules of their own).
    pub(crate) fn is_formatting(self) -> bool {
        use Tag::{B, Big, Code, Em, Font, I, S, Small, Strike, Strong, Tt, U};
        matches!(
            self,
            B | Big | Code | Em | Font | I | S | Small | Strike | Strong | Tt | U
        )
    }

    /// Start tags that break out of SVG/MathML content (`font` only with some attributes).
    pub(crate) fn breaks_out_of_foreign(self) -> bool {
        use Tag::{
            B, Big, Blockquote, Body, Br, Center, Code, Dd, Div, Dl, Dt, Em, Embed, H1, H2, H3, H4,
            H5, H6, Head, Hr, I, Img, Li, Listing, Menu, Meta, Nobr, Ol, P, Pre, Ruby, S, Small,
            Span, Strike, Strong, Sub, Sup, Table, Tt, U, Ul, Var,
        };
        matches!(
            self,
            B | Big
                | Blockquote
                | Body
                | Br
                | Center
                | Code
                | Dd
                | Div
                | Dl
                | Dt
                | Em
                | Embed
                | H1
                | H2
                | H3
                | H4
                | H5
                | H6
                | Head
                | Hr
                | I
                | Img
                | Li
                | Listing
                | Menu
                | Meta
                | Nobr
                | Ol
                | P
                | Pre
                | Ruby
                | S
                | Small
                | Span
                | Strike
                | Strong
                | Sub
                | Sup
                | Table
                | Tt
                | U
                | Ul
                | Var
        )
    }
}

/// SVG element names the parser writes in camel case (the HTML standard's table).
pub(crate) fn svg_tag_name(lower: &str) -> Option<&'static str> {
    Some(match lower {
        "altglyph" => "altGlyph",
        "altglyphdef" => "altGlyphDef",
        "altglyphitem" => "altGlyphItem",
        "animatecolor" => "animateColor",
        "animatemotion" => "animateMotion",
        "animatetransform" => "animateTransform",
        "clippath" => "clipPath",
        "feblend" => "feBlend",
        "fecolormatrix" => "feColorMatrix",
        "fecomponenttransfer" => "feComponentTransfer",
        "fecomposite" => "feComposite",
        "feconvolvematrix" => "feConvolveMatrix",
        "fediffuselighting" => "feDiffuseLighting",
        "fedisplacementmap" => "feDisplacementMap",
        "fedistantlight" => "feDistantLight",
        "fedropshadow" => "feDropShadow",
        "feflood" => "feFlood",
        "fefunca" => "feFuncA",
        "fefuncb" => "feFuncB",
        "fefuncg" => "feFuncG",
        "fefuncr" => "feFuncR",
        "fegaussianblur" => "feGaussianBlur",
        "feimage" => "feImage",
        "femerge" => "feMerge",
        "femergenode" => "feMergeNode",
        "femorphology" => "feMorphology",
        "feoffset" => "feOffset",
        "fepointlight" => "fePointLight",
        "fespecularlighting" => "feSpecularLighting",
        "fespotlight" => "feSpotLight",
        "fetile" => "feTile",
        "feturbulence" => "feTurbulence",
        "foreignobject" => "foreignObject",
        "glyphref" => "glyphRef",
        "lineargradient" => "linearGradient",
        "radialgradient" => "radialGradient",
        "textpath" => "textPath",
        _ => return None,
    })
}

/// SVG attribute names the parser writes in camel case.
pub(crate) fn svg_attribute_name(lower: &str) -> Option<&'static str> {
    Some(match lower {
        "attributename" => "attributeName",
        "attributetype" => "attributeType",
        "basefrequency" => "baseFrequency",
        "baseprofile" => "baseProfile",
        "calcmode" => "calcMode",
        "clippathunits" => "clipPathUnits",
        "diffuseconstant" => "diffuseConstant",
        "edgemode" => "edgeMode",
        "filterunits" => "filterUnits",
        "glyphref" => "glyphRef",
        "gradienttransform" => "gradientTransform",
        "gradientunits" => "gradientUnits",
        "kernelmatrix" => "kernelMatrix",
        "kernelunitlength" => "kernelUnitLength",
        "keypoints" => "keyPoints",
        "keysplines" => "keySplines",
        "keytimes" => "keyTimes",
        "lengthadjust" => "lengthAdjust",
        "limitingconeangle" => "limitingConeAngle",
        "markerheight" => "markerHeight",
        "markerunits" => "markerUnits",
        "markerwidth" => "markerWidth",
        "maskcontentunits" => "maskContentUnits",
        "maskunits" => "maskUnits",
        "numoctaves" => "numOctaves",
        "pathlength" => "pathLength",
        "patterncontentunits" => "patternContentUnits",
        "patterntransform" => "patternTransform",
        "patternunits" => "patternUnits",
        "pointsatx" => "pointsAtX",
        "pointsaty" => "pointsAtY",
        "pointsatz" => "pointsAtZ",
        "preservealpha" => "preserveAlpha",
        "preserveaspectratio" => "preserveAspectRatio",
        "primitiveunits" => "primitiveUnits",
        "refx" => "refX",
        "refy" => "refY",
        "repeatcount" => "repeatCount",
        "repeatdur" => "repeatDur",
        "requiredextensions" => "requiredExtensions",
        "requiredfeatures" => "requiredFeatures",
        "specularconstant" => "specularConstant",
        "specularexponent" => "specularExponent",
        "spreadmethod" => "spreadMethod",
        "startoffset" => "startOffset",
        "stddeviation" => "stdDeviation",
        "stitchtiles" => "stitchTiles",
        "surfacescale" => "surfaceScale",
        "systemlanguage" => "systemLanguage",
        "tablevalues" => "tableValues",
        "targetx" => "targetX",
        "targety" => "targetY",
        "textlength" => "textLength",
        "viewbox" => "viewBox",
        "viewtarget" => "viewTarget",
        "xchannelselector" => "xChannelSelector",
        "ychannelselector" => "yChannelSelector",
        "zoomandpan" => "zoomAndPan",
        _ => return None,
    })
}

/// The namespace of an attribute (foreign elements may have `xlink:`, `xml:`, `xmlns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrNs {
    None,
    Xlink,
    Xml,
    Xmlns,
}

/// Namespaced attribute names of foreign elements: (namespace, prefix, local name).
pub(crate) fn foreign_attribute(
    lower: &str,
) -> Option<(AttrNs, Option<&'static str>, &'static str)> {
    Some(match lower {
        "xlink:actuate" => (AttrNs::Xlink, Some("xlink"), "actuate"),
        "xlink:arcrole" => (AttrNs::Xlink, Some("xlink"), "arcrole"),
        "xlink:href" => (AttrNs::Xlink, Some("xlink"), "href"),
        "xlink:role" => (AttrNs::Xlink, Some("xlink"), "role"),
        "xlink:show" => (AttrNs::Xlink, Some("xlink"), "show"),
        "xlink:title" => (AttrNs::Xlink, Some("xlink"), "title"),
        "xlink:type" => (AttrNs::Xlink, Some("xlink"), "type"),
        "xml:lang" => (AttrNs::Xml, Some("xml"), "lang"),
        "xml:space" => (AttrNs::Xml, Some("xml"), "space"),
        "xmlns" => (AttrNs::Xmlns, None, "xmlns"),
        "xmlns:xlink" => (AttrNs::Xmlns, Some("xmlns"), "xlink"),
        _ => return None,
    })
}
